"""Cutting within attention heads (``head_dims=True``): every head keeps d' of its dims.

Oracles: dims made provably dead by the test (the rows of q, k or v that produce them zeroed, so
they add nothing to ``q . k`` or to the output) are removed and the outputs do not change (1e-5),
with fused (``scaled_dot_product_attention`` without ``scale=``) and explicit attention, on timm's
ViT, the criteria zoo's ViT and the test zoo's attentions; the fused cases hold only because the
q/k rows are rescaled (the same plan without its rescale changes the outputs); ONNX Runtime agrees;
a plan replays from its JSON. Refusals are named: rotary code, a q/k norm, nn.MultiheadAttention
and a scale computed in Python from ``q.size(-1)`` each leave whole-head units, with the reason.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from benchmarks import _criteria_zoo as criteria_zoo
from edgeprune.plan import Plan
from edgeprune.strategies import make_plan
from edgeprune.surgery import named_tensors
from tests import zoo


def _within(analysis):
    """Groups cut within heads: those whose units are a split's heads x head dims."""
    spaces = analysis.trace.spaces
    totals = {spaces.find(f.total) for f in analysis.trace.fibres}
    return [g for g in analysis.groups if spaces.find(g.root) in totals]


def _kill(model: nn.Module, group, units: list[int]) -> None:
    """Zero the producing rows (weights and biases) of ``units``: q, k or v is 0 at those dims."""
    tensors = named_tensors(model)
    owners = {s.tensor.rpartition(".")[0] for s in group.slots if s.role == "out"}
    with torch.no_grad():
        for s in group.slots:
            if s.role == "out" or (s.role == "channel" and s.tensor.rpartition(".")[0] in owners):
                tensors[s.tensor].index_fill_(s.dim, torch.tensor(s.indices(units)), 0.0)


def _dead_plan(model: nn.Module, x, seed: int = 0):
    """Kill half the dims of every head, at random positions per head; return (plan, analysis)."""
    analysis = ep.analyze(model, x, head_dims=True)
    gen = torch.Generator().manual_seed(seed)
    removals = {}
    for g in _within(analysis):
        block = g.block_size
        units = sorted(h * block + int(i) for h in range(g.partitions)
                       for i in torch.randperm(block, generator=gen)[: block // 2])
        _kill(model, g, units)
        removals[g.name] = units
    return make_plan(analysis.groups, removals, named_tensors(model)), analysis


def _timm_vit(fused: bool, **kw):
    import timm  # the tasks extra, which dev installs: a missing timm is a failure, not a skip

    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, **kw).eval()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused
    return model, torch.randn(2, 3, 32, 32)


def _criteria_vit():
    torch.manual_seed(0)
    return criteria_zoo.ViT().eval(), torch.randn(2, 1, 28, 28)


def _zoo(factory):
    def make():
        torch.manual_seed(0)
        model = factory().eval()
        return model, zoo.example_input(model)
    make.__name__ = factory.__name__
    return make


CASES = {"timm-fused": lambda: _timm_vit(True), "timm-eager": lambda: _timm_vit(False),
         "criteria-zoo-vit": _criteria_vit, "HeadAttention": _zoo(zoo.HeadAttention),
         "SeparateProjectionAttention": _zoo(zoo.SeparateProjectionAttention), "TinyViT": _zoo(zoo.TinyViT)}


@pytest.mark.parametrize("case", list(CASES))
def test_dead_head_dims_are_removed_and_the_outputs_do_not_change(case):
    model, x = CASES[case]()
    plan, analysis = _dead_plan(model, x)
    assert plan.groups, f"nothing cut within heads; skipped: {analysis.skipped}"
    heads_before = {n: m.num_heads for n, m in model.named_modules() if hasattr(m, "num_heads")}
    with torch.no_grad():
        reference = model(x)
        pruned = ep.apply_plan(model, plan)
        result = pruned(x)
    assert result.shape == reference.shape
    assert ((result - reference).abs().max() / reference.abs().max()) < 1e-5
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    for name, m in pruned.named_modules():  # the heads stay; each keeps half its dims
        if name in heads_before:
            assert m.num_heads == heads_before[name]
            if hasattr(m, "head_dim"):
                assert m.head_dim == model.get_submodule(name).head_dim // 2
            if hasattr(m, "scale"):
                assert m.scale == model.get_submodule(name).scale  # the original head dim's scale


def test_a_fused_qkv_projection_is_one_group_per_head_position():
    model, x = _zoo(zoo.HeadAttention)()
    (group,) = _within(ep.analyze(model, x, head_dims=True))
    assert (group.name, group.size, group.partitions) == ("qkv", 32, 4)  # 4 heads of 8 dims
    assert {(a.name, a.per_unit, a.divisor) for a in group.attrs} == {("head_dim", 1, 4), ("attn_dim", 1, 1)}
    qkv = next(s for s in group.slots if s.tensor == "qkv.weight")
    assert (qkv.inner, qkv.outer, qkv.stride) == (1, 3, 32)  # q, k and v lose the same dims of a head
    assert group.rescale == []  # HeadAttention scales by its own self.scale


def test_separate_projections_cut_q_with_k_and_v_on_its_own():
    model, x = _zoo(zoo.SeparateProjectionAttention)()
    groups = {g.name: g for g in _within(ep.analyze(model, x, head_dims=True))}
    assert {(s.tensor, s.role) for s in groups["q"].slots} >= {("q.weight", "out"), ("k.weight", "out")}
    assert {(s.tensor, s.role) for s in groups["v"].slots} >= {("v.weight", "out"), ("out.weight", "in")}
    assert groups["q"].partitions == groups["v"].partitions == 3


@pytest.mark.parametrize("case", ["timm-fused", "criteria-zoo-vit"])
def test_the_default_attention_scale_is_kept_by_rescaling_q_and_k(case):
    model, x = CASES[case]()
    plan, analysis = _dead_plan(model, x)
    for g in plan.groups:
        if g.name.endswith("qkv"):
            rows = {(s.tensor, s.offset) for s in g.rescale}
            width = g.size  # heads x head_dim: q rows first, then k, then v
            assert {o for _, o in rows} == {0, width}, "q and k rows rescaled, v rows not"
    with torch.no_grad():
        reference = model(x)
        unscaled = Plan.from_dict(plan.to_dict())
        unscaled.groups = [dataclasses.replace(g, rescale=[]) for g in unscaled.groups]
        wrong = ep.apply_plan(model, unscaled)(x)
    assert ((wrong - reference).abs().max() / reference.abs().max()) > 1e-3  # what the rescale prevents


def test_a_cut_within_heads_exports_to_onnx_and_replays_from_json(tmp_path):
    model, x = _criteria_vit()  # fused attention: the plan rescales q and k
    result = ep.prune(model, x, ratio=0.5, head_dims=True)
    attn = result.model.blocks[0].attn
    assert (attn.num_heads, attn.head_dim) == (4, 8)
    assert any(g.rescale for g in result.plan.groups)
    ep.export_onnx(result.model, x, tmp_path / "vit.onnx")  # checked against PyTorch, or it raises
    replayed = ep.apply_plan(copy.deepcopy(model), Plan.from_json(result.plan.to_json()))
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), result.model(x))


def _whole_heads(analysis):
    return sorted((g.name, g.size, g.unit) for g in analysis.groups if g.attrs)


def _refused(analysis) -> dict[str, str]:
    return {k: v for k, v in analysis.skipped.items() if k.endswith("(head dims)")}


def test_a_q_k_norm_over_the_head_dim_is_refused_by_name_and_heads_are_cut_whole():
    model, x = _timm_vit(True, qk_norm=True)
    analysis = ep.analyze(model, x, head_dims=True)
    assert not _within(analysis)
    assert "q_norm.weight" in _refused(analysis)["blocks.0.attn (head dims)"]
    assert _whole_heads(analysis) == _whole_heads(ep.analyze(model, x))  # the default cut, unchanged


def test_rotary_position_code_is_refused_by_name():
    from timm.layers import AttentionRope

    class RopeBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = AttentionRope(32, num_heads=4, qkv_bias=True)

        def forward(self, x):
            return self.attn(x, rope=None)

    model, x = RopeBlock().eval(), torch.randn(1, 5, 32)
    analysis = ep.analyze(model, x, head_dims=True)
    assert not _within(analysis)
    assert "rotary" in _refused(analysis)["attn (head dims)"]


def test_a_llama_with_rotary_embeddings_keeps_its_default_cut():
    from tests.test_gqa import _llama, _tokens

    model, x = _llama(heads=4, kv_heads=4), _tokens()
    analysis = ep.analyze(model, x, head_dims=True)
    assert not _within(analysis)
    assert "LlamaRotaryEmbedding" in _refused(analysis)["model.layers.0.self_attn (head dims)"]
    assert [g.name for g in analysis.groups] == [g.name for g in ep.analyze(model, x).groups]


def test_torch_multihead_attention_is_refused_by_name():
    import torchvision

    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=4,
                                                 hidden_dim=32, mlp_dim=64).eval()
    analysis = ep.analyze(model, torch.randn(1, 3, 32, 32), head_dims=True)
    assert not _within(analysis)
    assert "nn.MultiheadAttention" in _refused(analysis)["encoder.layers.encoder_layer_0.self_attention (head dims)"]


class _PythonScale(zoo.HeadAttention):
    """HeadAttention whose scale is computed in Python from the tensor: the trace cannot see it."""

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, self.attn_dim))


class _AttributeScale(zoo.HeadAttention):
    """Eager attention scaled by ``self.head_dim ** -0.5``, the attribute the cut updates; small
    weights keep the logits small, so the wrong scale changes the outputs only slightly (the fuzz
    campaign found this: the value check runs in float64 with sharpened attention to see it)."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.qkv.weight.mul_(0.05)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, self.attn_dim))


class _NormedQuery(zoo.HeadAttention):
    """q passes a parameter-free op before the fused attention: its rows cannot be rescaled."""

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = nn.functional.scaled_dot_product_attention(torch.tanh(q), k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


@pytest.mark.parametrize("cls, words", [(_PythonScale, "changed the outputs"), (_AttributeScale, "changed the outputs"),
                                        (_NormedQuery, "attention scale computed from the head dim")])
def test_a_scale_that_would_follow_the_cut_is_refused(cls, words):
    torch.manual_seed(0)
    model = cls().eval()
    x = zoo.example_input(zoo.HeadAttention())
    analysis = ep.analyze(model, x, head_dims=True)
    assert not _within(analysis)
    assert words in _refused(analysis)["top level (head dims)"]
    assert _whole_heads(analysis) == [("qkv", 4, 8)]  # whole heads instead


def test_head_dims_is_an_option_of_the_channels_kind():
    model, x = _zoo(zoo.TinyViT)()
    result = ep.prune(model, x, kind=ep.kinds.Channels(head_dims=True), ratio=0.5)
    assert result.model.blocks[0]["attn"].num_heads == 4 and result.model.blocks[0]["attn"].head_dim == 4
    assert ep.prune(model, x, ratio=0.5).model.blocks[0]["attn"].num_heads == 2  # the default: whole heads


def test_live_dims_of_equal_norms_take_the_default_scale_of_the_cut_dim():
    """Oracle: when every q and k row has the same norm, keeping the logits' spread (the rescale's
    c_h) is exactly SDPA's default scale of the cut dim, i.e. the same plan without its rescale."""
    model, x = _criteria_vit()
    analysis = ep.analyze(model, x, head_dims=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, criteria_zoo.Attention):
                m.qkv.weight.copy_(m.qkv.weight / m.qkv.weight.norm(dim=1, keepdim=True))
    gen = torch.Generator().manual_seed(1)
    removals = {g.name: sorted(h * g.block_size + int(i) for h in range(g.partitions)
                               for i in torch.randperm(g.block_size, generator=gen)[: g.block_size // 2])
                for g in _within(analysis)}
    plan = make_plan(analysis.groups, removals, named_tensors(model))
    assert any(g.rescale for g in plan.groups)
    unscaled = Plan.from_dict(plan.to_dict())
    unscaled.groups = [dataclasses.replace(g, rescale=[]) for g in unscaled.groups]
    with torch.no_grad():
        kept_scale = ep.apply_plan(model, plan)(x)
        default_scale = ep.apply_plan(model, unscaled)(x)
        exact_rows = ep.apply_plan(model, plan)  # and a dead-free cut does change the model
        assert ((kept_scale - default_scale).abs().max() / default_scale.abs().max()) < 1e-5
        assert ((exact_rows(x) - model(x)).abs().max() / model(x).abs().max()) > 1e-3
