"""Attention heads: found as groups, removed whole, with the attributes that count them kept in step.

Oracles: heads made provably dead (every weight that reads them zeroed) are pruned and the outputs
do not change; ONNX Runtime agrees with the pruned PyTorch model; a plan replayed from its JSON on a
fresh copy gives the same model.
"""
from __future__ import annotations

import copy

import pytest
import torch

import edgeprune as ep
from edgeprune.plan import Plan
from edgeprune.strategies import make_plan
from edgeprune.surgery import named_tensors
from tests import zoo
from tests.test_equivalence import make_dead


def _head_groups(analysis):
    return [g for g in analysis.groups if g.attrs]


def test_a_fused_qkv_projection_is_one_group_of_heads():
    model = zoo.HeadAttention().eval()
    analysis = ep.analyze(model, zoo.example_input(model))
    (group,) = _head_groups(analysis)
    assert (group.name, group.size, group.unit) == ("qkv", 4, 8)
    assert {(a.name, a.per_unit) for a in group.attrs} == {("num_heads", 1), ("attn_dim", 8)}
    slot = next(s for s in group.slots if s.tensor == "qkv.weight")
    assert (slot.inner, slot.outer, slot.stride) == (8, 3, 32)  # q, k and v rows of each head
    proj = next(s for s in group.slots if s.tensor == "proj.weight")
    assert (proj.dim, proj.inner, proj.outer) == (1, 8, 1)


def test_removing_heads_updates_the_counts_and_keeps_the_other_heads_exact():
    torch.manual_seed(0)
    model = zoo.HeadAttention().eval()
    x = zoo.example_input(model)
    analysis = ep.analyze(model, x)
    (group,) = _head_groups(analysis)
    make_dead(model, group, [0, 2])
    reference = model(x)
    pruned = ep.apply_plan(copy.deepcopy(model), make_plan(analysis.groups, {group.name: [0, 2]},
                                                           named_tensors(model)))
    assert (pruned.num_heads, pruned.attn_dim, pruned.head_dim) == (2, 16, 8)
    assert pruned.qkv.weight.shape == (48, 24) and pruned.proj.weight.shape == (24, 16)
    # heads 1 and 3 survive: their q rows are rows 8:16 and 24:32 of the original
    assert torch.equal(pruned.qkv.weight[:16], torch.cat([model.qkv.weight[8:16], model.qkv.weight[24:32]]))
    torch.testing.assert_close(pruned(x), reference, rtol=1e-5, atol=1e-6)


def test_dead_heads_of_a_timm_vit_pruned_outputs_unchanged_and_onnx_agrees(tmp_path):
    import timm  # the tasks extra, which dev installs: a missing timm is a failure, not a skip
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    analysis = ep.analyze(model, x)
    heads = _head_groups(analysis)
    assert [g.name for g in heads] == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert all(g.size == 3 and g.unit == 64 for g in heads)
    for g in heads:
        make_dead(model, g, [1])
    with torch.no_grad():
        reference = model(x)
        plan = make_plan(analysis.groups, {g.name: [1] for g in heads}, named_tensors(model))
        pruned = ep.apply_plan(copy.deepcopy(model), plan)
        result = pruned(x)
    assert [b.attn.num_heads for b in pruned.blocks] == [2, 2]
    assert [b.attn.attn_dim for b in pruned.blocks] == [128, 128]
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-5)
    report = ep.verify_pruned(model, pruned, x)
    assert report.ok, report.problems


def test_a_head_plan_replays_from_json_on_a_fresh_model():
    torch.manual_seed(0)
    model = zoo.TinyViT().eval()
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.5)
    names = {g.name for g in result.plan.groups}
    assert {"blocks.0.attn.qkv", "blocks.1.attn.q"} <= names
    replayed = ep.apply_plan(copy.deepcopy(model), Plan.from_json(result.plan.to_json()))
    assert replayed.blocks[0]["attn"].num_heads == result.model.blocks[0]["attn"].num_heads == 2
    assert replayed.blocks[1]["attn"].heads == result.model.blocks[1]["attn"].heads == 2  # 3 heads, half: 2 kept
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), result.model(x))


def test_a_plan_whose_head_count_does_not_match_is_refused_and_the_model_untouched():
    model = zoo.HeadAttention().eval()
    x = zoo.example_input(model)
    plan = ep.prune(model, x, ratio=0.5).plan
    other = zoo.HeadAttention().eval()
    other.num_heads = 5  # not what the plan was made for
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ep.PlanError, match="num_heads"):
        ep.apply_plan(other, plan)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert other.attn_dim == 32


def test_a_vit_with_pruned_heads_saves_and_loads_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = zoo.TinyViT().eval()
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.5)
    path = ep.save(result, tmp_path / "vit.edgeprune")
    loaded = ep.load(path, model=zoo.TinyViT())
    assert loaded.blocks[0]["attn"].num_heads == 2 and loaded.blocks[0]["attn"].attn_dim == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model(x))


class _StridedAttention(zoo.HeadAttention):
    """HeadAttention that also pools its tokens by a stride equal to its head count."""

    def __init__(self) -> None:
        super().__init__(num_heads=4)
        self.q_stride = 4

    def forward(self, x):
        x = super().forward(x)
        B, N, C = x.shape
        return x.view(B, N // self.q_stride, self.q_stride, C).amax(dim=2)


def test_an_attribute_that_only_equals_the_head_count_is_left_alone():
    # hiera's q_stride == heads: read by value alone it would be "updated" and break the pooling
    model = _StridedAttention().eval()
    x = torch.randn(2, 8, 24)
    analysis = ep.analyze(model, x)
    (group,) = _head_groups(analysis)
    assert {a.name for a in group.attrs} == {"num_heads", "attn_dim"}
    pruned = ep.apply_plan(copy.deepcopy(model), make_plan(analysis.groups, {group.name: [3]}, named_tensors(model)))
    assert (pruned.num_heads, pruned.q_stride) == (3, 4)
    assert pruned(x).shape == model(x).shape


def test_dead_heads_of_a_swin_pruned_with_their_relative_position_bias_columns():
    # the bias table is read by an index buffer (table[index]): its heads dim follows the heads
    import timm  # the tasks extra, which dev installs: a missing timm is a failure, not a skip
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56, depths=(2, 2),
                              num_heads=(2, 4), embed_dim=32).eval()
    x = torch.randn(2, 3, 56, 56)
    analysis = ep.analyze(model, x)
    heads = _head_groups(analysis)
    assert len(heads) == 4
    for g in heads:
        table = next(s for s in g.slots if s.tensor.endswith("relative_position_bias_table"))
        assert (table.dim, table.role) == (1, "channel")
        make_dead(model, g, [0])
    with torch.no_grad():
        reference = model(x)
        pruned = ep.apply_plan(copy.deepcopy(model), make_plan(analysis.groups, {g.name: [0] for g in heads},
                                                               named_tensors(model)))
        torch.testing.assert_close(pruned(x), reference, rtol=1e-5, atol=1e-6)
    assert [b.attn.num_heads for layer in pruned.layers for b in layer.blocks] == [1, 1, 3, 3]
    assert ep.verify_pruned(model, pruned, x).ok
