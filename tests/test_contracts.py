"""One contract per registry, one test body each, run over every entry (timm's tests/test_models.py style).

* op rules (``edgeprune.graph.rules``): every rule family has a case, a tiny model ``producer ->
  op -> consumer``; the rule runs (the op is traced under its name and is not "unknown"), labels
  every output dimension with the sizes it has, lets the producer's units be pruned exactly where
  the op keeps units apart (and keeps them whole where it mixes them), and the engine's oracle
  holds: units zeroed everywhere are pruned and the outputs do not change.
* allocations (``edgeprune.strategies.session.ALLOCATIONS``): removals are valid units, the lowest scores
  of their partition, never more than ``ratio`` of all units, monotone in ``ratio``; the plan runs.
* strategies (``edgeprune.strategies.PRESETS``): the caller's model is untouched, ``result.plans``
  holds every plan the strategy made, and they replay from their JSON on a fresh copy to the same outputs.
* plan kinds (channels, heads, blocks, weights, 2:4): a plan round-trips JSON -> apply on a fresh
  model -> save/load (``edgeprune.export.saving``) with outputs identical at every step.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.export.saving import load, save
from edgeprune.graph.rules import contract, default_rules, elementwise, indexing, layers, reduce, shape
from edgeprune.plan import Plan, plans_of
from edgeprune.strategies import PRESETS, make_plan, removable
from edgeprune.strategies.session import ALLOCATIONS
from edgeprune.surgery import named_tensors
from tests import zoo
from tests.test_equivalence import make_dead

RULE_MODULES = (layers, elementwise, shape, indexing, reduce, contract)


# -- op rules ---------------------------------------------------------------------------------------
class Fn(nn.Module):
    """An op under test: ``fn(self, h)``, with any parameters it reads."""

    def __init__(self, fn: Callable, **params: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for name, value in params.items():
            setattr(self, name, nn.Parameter(value))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(self, h)


def _bn() -> nn.Module:
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn


# layout: (producer, example input): the producer's 8 units are what the op receives
LAYOUTS = {
    "nc": (lambda: nn.Linear(3, 8), lambda: torch.randn(2, 3)),
    "ncl": (lambda: nn.Conv1d(3, 8, 1), lambda: torch.randn(2, 3, 6)),
    "nchw": (lambda: nn.Conv2d(3, 8, 1), lambda: torch.randn(2, 3, 6, 6)),
    "ncdhw": (lambda: nn.Conv3d(3, 8, 1), lambda: torch.randn(2, 3, 4, 4, 4)),
    "nlc": (lambda: nn.Linear(3, 8), lambda: torch.randn(2, 6, 3)),
    "ids": (lambda: nn.Embedding(10, 8), lambda: torch.randint(0, 10, (2, 6))),
}


@dataclass(frozen=True)
class Case:
    """``op`` as traced; ``reads``: the consumer reads channels at dim 1 (``c1``) or the last dim;
    ``prunes``: the producer's units can go through this op; ``exact``: outputs stay identical
    (False where the op takes statistics over the units, which then cover fewer of them)."""

    id: str
    op: str
    layout: str
    make: Callable[[], nn.Module]
    reads: str = "c1"
    prunes: bool = True
    exact: bool = True


def fn(f: Callable, **params: torch.Tensor) -> Callable[[], nn.Module]:
    return lambda: Fn(f, **{k: v.clone() for k, v in params.items()})


CASES = [
    # layers
    Case("conv1d", "conv1d", "ncl", lambda: nn.Conv1d(8, 8, 3, padding=1)),
    Case("conv2d", "conv2d", "nchw", lambda: nn.Conv2d(8, 8, 3, padding=1)),
    Case("conv2d-grouped", "conv2d", "nchw", lambda: nn.Conv2d(8, 8, 3, padding=1, groups=2)),
    Case("conv3d", "conv3d", "ncdhw", lambda: nn.Conv3d(8, 8, 1)),
    Case("conv_transpose2d", "conv_transpose2d", "nchw", lambda: nn.ConvTranspose2d(8, 8, 2, stride=2)),
    Case("linear", "linear", "nlc", lambda: nn.Linear(8, 8), reads="last"),
    Case("batch_norm", "batch_norm", "nchw", _bn),
    Case("instance_norm", "instance_norm", "nchw", lambda: nn.InstanceNorm2d(8, affine=True)),
    Case("group_norm", "group_norm", "nchw", lambda: nn.GroupNorm(2, 8), exact=False),
    Case("layer_norm", "layer_norm", "nlc", lambda: nn.LayerNorm(8), reads="last", exact=False),
    Case("layer_norm-over-width", "layer_norm", "nchw", fn(lambda m, h: F.layer_norm(h, h.shape[-1:]))),
    Case("rms_norm", "rms_norm", "nlc", lambda: nn.RMSNorm(8), reads="last", exact=False),
    Case("prelu", "prelu", "nchw", lambda: nn.PReLU(8)),
    Case("embedding", "embedding", "ids", fn(lambda m, h: h * 2), reads="last"),
    # elementwise
    Case("relu", "relu", "nchw", fn(lambda m, h: F.relu(h))),
    Case("float", "float", "nchw", fn(lambda m, h: h.double().float())),
    Case("dropout", "dropout", "nchw", fn(lambda m, h: F.dropout(h, 0.3, training=False))),
    Case("softmax-over-width", "softmax", "nchw", fn(lambda m, h: h.softmax(-1))),
    Case("softmax-over-channels", "softmax", "nchw", fn(lambda m, h: h.softmax(1)), exact=False),
    Case("add-per-channel", "add", "nchw", fn(lambda m, h: h + m.bias, bias=torch.randn(1, 8, 1, 1))),
    Case("mul", "mul", "nchw", fn(lambda m, h: h * torch.sigmoid(h))),
    Case("where", "where", "nchw", fn(lambda m, h: torch.where(h > 0, h, 0.1 * h))),
    Case("cumsum-over-width", "cumsum", "nchw", fn(lambda m, h: h.cumsum(-1))),
    Case("cumsum-over-channels", "cumsum", "nchw", fn(lambda m, h: h.cumsum(1)), prunes=False),
    Case("ones_like", "ones_like", "nchw", fn(lambda m, h: h + torch.ones_like(h))),
    # shape
    Case("flatten", "flatten", "nchw", fn(lambda m, h: h.flatten(2))),
    Case("flatten-into-linear", "flatten", "nchw", fn(lambda m, h: h.flatten(1)), reads="last"),
    Case("view", "view", "nchw", fn(lambda m, h: h.view(h.shape[0], h.shape[1], -1))),
    Case("view-literal-sizes", "view", "nchw", fn(lambda m, h: h.view(2, 8, 36)), prunes=False),
    Case("unsqueeze", "unsqueeze", "nc", fn(lambda m, h: h.unsqueeze(-1))),
    Case("permute", "permute", "nchw", fn(lambda m, h: h.permute(0, 2, 3, 1)), reads="last"),
    Case("transpose", "transpose", "nlc", fn(lambda m, h: h.transpose(1, 2))),
    Case("t", "t", "nc", fn(lambda m, h: h.t().t()), reads="last"),
    Case("mT", "mT", "nlc", fn(lambda m, h: h.mT)),
    Case("movedim", "movedim", "nchw", fn(lambda m, h: torch.movedim(h, 1, -1)), reads="last"),
    Case("expand", "expand", "nc", fn(lambda m, h: h[:, :, None].expand(-1, -1, 4))),
    Case("repeat", "repeat", "nchw", fn(lambda m, h: h.repeat(1, 1, 2, 2))),
    # indexing
    Case("getitem-spatial", "__getitem__", "nchw", fn(lambda m, h: h[:, :, 1:5, ::2])),
    Case("getitem-channels", "__getitem__", "nchw", fn(lambda m, h: h[:, :4]), prunes=False),
    Case("cat", "cat", "nchw", fn(lambda m, h: torch.cat([h, 2 * h], 1))),
    Case("stack", "stack", "nchw", fn(lambda m, h: torch.stack([h, -h], 2))),
    Case("chunk-gate", "chunk", "nchw", fn(lambda m, h: h.chunk(2, 1)[0] * torch.sigmoid(h.chunk(2, 1)[1]))),
    Case("tensor-split-swap", "tensor_split", "nchw", fn(lambda m, h: torch.cat(torch.tensor_split(h, 2, 1)[::-1], 1))),
    Case("split-spatial", "split", "nchw", fn(lambda m, h: torch.cat(torch.split(h, 3, -1)[::-1], -1))),
    Case("narrow", "narrow", "nchw", fn(lambda m, h: h.narrow(-1, 1, 4))),
    Case("select", "select", "nchw", fn(lambda m, h: h.select(-1, 0))),
    Case("unbind", "unbind", "nchw", fn(lambda m, h: torch.stack(torch.unbind(h, -1)[::-1], -1))),
    Case("index_select", "index_select", "nchw",
         fn(lambda m, h: h.index_select(-1, torch.arange(0, h.shape[-1], 2)))),
    Case("glu", "glu", "nchw", fn(lambda m, h: F.glu(h, 1))),
    Case("roll", "roll", "nchw", fn(lambda m, h: h.roll(1, -1))),
    Case("flip", "flip", "nchw", fn(lambda m, h: h.flip(-1))),
    # reductions and pooling
    Case("norm", "norm", "nchw", fn(lambda m, h: h.norm(dim=-1))),
    Case("max-over-width", "max", "nchw", fn(lambda m, h: h.max(dim=-1).values)),
    Case("mean-spatial", "mean", "nchw", fn(lambda m, h: h.mean(dim=(2, 3)))),
    Case("sum-over-channels", "sum", "nchw", fn(lambda m, h: h.sum(1, keepdim=True))),
    Case("argmax-over-width", "argmax", "nchw", fn(lambda m, h: h.argmax(dim=-1).float())),
    Case("argmax-over-channels", "argmax", "nchw", fn(lambda m, h: h.argmax(1, keepdim=True).float()),
         prunes=False),
    Case("max_pool2d", "max_pool2d", "nchw", fn(lambda m, h: F.max_pool2d(h, 2))),
    Case("avg_pool1d", "avg_pool1d", "ncl", fn(lambda m, h: F.avg_pool1d(h, 2))),
    Case("adaptive_avg_pool3d", "adaptive_avg_pool3d", "ncdhw", fn(lambda m, h: F.adaptive_avg_pool3d(h, 1))),
    Case("interpolate", "interpolate", "nchw", fn(lambda m, h: F.interpolate(h, scale_factor=2.0))),
    Case("pad", "pad", "nchw", fn(lambda m, h: F.pad(h, (1, 1, 1, 1)))),
    # contractions
    Case("matmul-over-tokens", "matmul", "nlc", fn(lambda m, h: m.mix @ h, mix=torch.randn(6, 6)), reads="last"),
    Case("matmul-over-channels", "matmul", "nlc", fn(lambda m, h: h @ m.w, w=torch.randn(8, 5)), reads="last"),
    Case("addmm", "addmm", "nc", fn(lambda m, h: torch.addmm(m.b, h, m.w), b=torch.randn(5), w=torch.randn(8, 5)),
         reads="last"),
    Case("einsum", "einsum", "nlc", fn(lambda m, h: torch.einsum("blc,cd->bld", h, m.w), w=torch.randn(8, 5)),
         reads="last"),
    # head_dim is never cut: the attention scale depends on it
    Case("scaled_dot_product_attention", "scaled_dot_product_attention", "nlc",
         fn(lambda m, h: F.scaled_dot_product_attention(h, h, h)), reads="last", prunes=False),
]


def _rule_family(rule: Callable) -> str:
    return f"{rule.__module__.rsplit('.', 1)[-1]}.{rule.__qualname__.split('.<locals>')[0]}"


def _registered() -> dict[str, Callable]:
    table: dict[str, Callable] = {}
    for module in RULE_MODULES:
        table.update(module.RULES)
    return table


def test_every_rule_family_has_a_contract_case():
    table, rules = _registered(), default_rules()
    assert all(rules.lookup(name) is rule for name, rule in table.items())  # the registry is these tables
    covered = {_rule_family(table[c.op]) for c in CASES}
    assert {_rule_family(r) for r in table.values()} == covered


class OpModel(nn.Module):
    """``producer -> op -> consumer``: the consumer reads the op's output units (a 1x1 conv or a Linear)."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        make_producer, self.make_input = LAYOUTS[case.layout]
        self.prod = make_producer()
        self.op = case.make()
        with torch.no_grad():
            y = self.op(self.prod(self.make_input()))
        if case.reads == "last" or y.dim() == 2:
            self.cons = nn.Linear(y.shape[-1], 4)
        else:
            self.cons = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[y.dim() - 3](y.shape[1], 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cons(self.op(self.prod(x)))


def _kill(model: nn.Module, group, units: list[int]) -> None:
    """Zero ``units`` in every tensor of ``group``: they output zeros and nothing reads them."""
    make_dead(model, group, units)
    tensors = named_tensors(model)
    with torch.no_grad():
        for slot in group.slots:
            if slot.role != "in":
                tensors[slot.tensor].index_fill_(slot.dim, torch.tensor(slot.indices(units)), 0.0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_rule_contract(case):
    torch.manual_seed(0)
    model = OpModel(case).eval()
    x = model.make_input()
    analysis = ep.analyze(model, x)
    records = [r for r in analysis.trace.records if r.name == case.op]
    assert records, f"{case.op!r} not traced; ops: {[r.name for r in analysis.trace.records]}"
    assert case.op not in analysis.trace.unknown_ops, analysis.trace.unknown_ops
    for r in records:  # one label per dimension, covering exactly its size
        for dims, size in zip(r.outputs, r.out_shapes):
            assert [sum(s.length for s in dm) for dm in dims] == list(size)
    producer = next((g for g in analysis.groups if g.name == "prod"), None)
    assert (producer is not None) == case.prunes, analysis.skipped.get("prod")

    removals = {}
    for g in analysis.groups:
        block, per = g.size // g.partitions, removable(g, g.size // 2) // g.partitions
        units = [k * block + i for k in range(g.partitions) for i in range(block - per, block)]  # last of each
        _kill(model, g, units)
        removals[g.name] = units
    plan = make_plan(analysis.groups, removals, named_tensors(model))
    with torch.no_grad():
        reference = model(x)
        pruned = ep.apply_plan(model, Plan.from_json(plan.to_json()))
        got = pruned(x)
    assert got.shape == reference.shape
    assert torch.isfinite(got).all()
    if case.exact:
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))
    if case.prunes:
        assert pruned.prod.weight.numel() < model.prod.weight.numel()


# -- allocations ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_cnn():
    torch.manual_seed(0)
    model, x = zoo.ResidualCNN().eval(), torch.randn(2, 3, 16, 16)
    groups = ep.analyze(model, x).groups
    gen = torch.Generator().manual_seed(1)
    scores = {g.name: torch.rand(g.size, generator=gen) for g in groups}
    return model, x, groups, scores


@pytest.mark.parametrize("name", sorted(ALLOCATIONS))
def test_allocation_contract(name, scored_cnn):
    model, x, groups, scores = scored_cnn
    allocate = ALLOCATIONS[name]
    total = sum(g.size for g in groups)
    previous = {g.name: 0 for g in groups}
    for ratio in (0.0, 0.2, 0.5, 0.8):
        removals = allocate(groups, scores, ratio)
        assert set(removals) <= {g.name for g in groups}
        removed = 0
        for g in groups:
            units = removals.get(g.name, [])
            block = g.size // g.partitions
            assert units == sorted(set(units)) and all(0 <= u < g.size for u in units)
            assert len(units) == removable(g, len(units))  # balanced per partition, one unit kept in each
            for k in range(g.partitions):  # the lowest scores of each partition go
                part = scores[g.name][k * block:(k + 1) * block]
                gone = [u - k * block for u in units if k * block <= u < (k + 1) * block]
                if gone:
                    kept = [i for i in range(block) if i not in gone]
                    assert float(part[gone].max()) <= float(part[kept].min())
            assert len(units) >= previous[g.name]  # monotone in the ratio
            previous[g.name] = len(units)
            removed += len(units)
        assert removed <= ratio * total
        assert (removed > 0) == (ratio >= 0.2)
        plan = make_plan(groups, removals, named_tensors(model))
        with torch.no_grad():
            assert ep.apply_plan(model, plan)(x).shape == model(x).shape


# -- strategies -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from torch.utils.data import DataLoader, TensorDataset

    from edgeprune.tasks import get_task, pretrained

    task = get_task("digits")
    split = task.data()
    calib = DataLoader(TensorDataset(split.x_train[:256], split.y_train[:256]), batch_size=128)
    return task, pretrained("digits", seed=0), calib


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"latency", "latency-depth"}))  # tests/test_latency_*.py
def test_strategy_contract_plans_replay_from_json(name, digits):
    task, model, calib = digits
    x = task.example_input(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = Budget(macs=0.6, max_drop=100.0)
    result = ep.prune(model, x[:1], budget=budget, strategy=name, evaluate=task.evaluate, data=calib)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "caller's model changed"
    plans = result.plans
    assert plans and plans[-1] is result.plan and plans == plans_of(result.model)
    replay = copy.deepcopy(model)
    for plan in plans:
        replay = ep.apply_plan(replay, Plan.from_json(plan.to_json()))
    with torch.no_grad():
        torch.testing.assert_close(replay(x), result.model(x), rtol=0, atol=0)


# -- plan kinds -------------------------------------------------------------------------------------
def _vit() -> nn.Module:
    from edgeprune.tasks import get_task

    return get_task("mnist-vit").build(0).eval()


def _cnn() -> nn.Module:
    return zoo.ResidualCNN().eval()


def _heads(plan: Plan) -> bool:
    return any(g.attrs for g in plan.groups)


PLAN_KINDS = {  # kind: (model, example input shape, prune keywords, what the plan holds)
    "channels": (_cnn, (2, 3, 16, 16), {"ratio": 0.4}, lambda p: p.groups and not p.masks and not p.blocks),
    "heads": (_vit, (2, 1, 28, 28), {"ratio": 0.34}, _heads),
    "blocks": (_vit, (2, 1, 28, 28), {"kind": "blocks", "ratio": 0.5}, lambda p: p.blocks and not p.groups),
    "weights": (_cnn, (2, 3, 16, 16), {"kind": "weights", "sparsity": 0.6}, lambda p: p.masks and not p.groups),
    "2:4": (_cnn, (2, 3, 16, 16), {"kind": "2:4"}, lambda p: p.masks and not p.groups),
}


@pytest.mark.parametrize("kind", list(PLAN_KINDS))
def test_plan_kind_round_trips_json_apply_save_load(kind, tmp_path):
    make, shape, keywords, holds = PLAN_KINDS[kind]
    torch.manual_seed(0)
    model = make()
    x = torch.randn(shape)
    result = ep.prune(model, x[:1], **keywords)
    assert holds(result.plan), result.plan.to_dict()
    with torch.no_grad():
        expected = result.model(x)
        replayed = ep.apply_plan(copy.deepcopy(model), Plan.from_json(result.plan.to_json()))
        torch.testing.assert_close(replayed(x), expected, rtol=0, atol=0)
        loaded = load(save(result, tmp_path / f"{kind.replace(':', '-')}.edgeprune"), model=model)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        assert [p.to_dict() for p in plans_of(loaded)] == [p.to_dict() for p in plans_of(result.model)]
