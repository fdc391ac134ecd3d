"""The engine's oracle: units made provably dead are pruned, and the outputs do not change.

A unit is made dead by zeroing every weight that reads it (each "in" slot of its group). If the
engine found every coupling, removing the unit everywhere leaves the function as it was; a missed
consumer, a wrong offset or a wrong group layout changes the output or breaks the forward.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.graph.trace import call_model
from edgeprune.strategies import lowest, make_plan, removable
from edgeprune.surgery import named_tensors
from tests import zoo

STATISTICS_NORMS = (nn.LayerNorm, nn.GroupNorm)  # their outputs depend on every unit, dead or not


def _reads_statistics(model: nn.Module, group) -> bool:
    modules = dict(model.named_modules())
    return any(isinstance(modules.get(s.tensor.rpartition(".")[0]), STATISTICS_NORMS) for s in group.slots)


def make_dead(model: nn.Module, group, units: list[int]) -> None:
    """Zero every weight that reads ``units`` of ``group``."""
    tensors = named_tensors(model)
    with torch.no_grad():
        for slot in group.slots:
            if slot.role != "in":
                continue
            t = tensors[slot.tensor]
            if slot.row_groups > 1:
                per_group_in, rows = t.shape[1], t.shape[0] // slot.row_groups
                for u in units:
                    k, j = divmod(u, per_group_in)
                    t[k * rows:(k + 1) * rows, j] = 0
            else:
                t.index_fill_(slot.dim, torch.tensor(slot.indices(units)), 0.0)


def dead_unit_plan(model: nn.Module, x, seed: int = 0):
    """Kill about half the units of every group that the test can kill exactly; return the plan."""
    analysis = ep.analyze(model, x)
    gen = torch.Generator().manual_seed(seed)
    removals = {}
    for g in analysis.groups:
        if _reads_statistics(model, g):
            continue
        units = lowest(torch.rand(g.size, generator=gen), removable(g, g.size // 2), g.partitions)
        make_dead(model, g, units)
        removals[g.name] = units
    return make_plan(analysis.groups, removals, named_tensors(model)), analysis


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory", zoo.EQUIVALENCE_ZOO, ids=lambda f: f.__name__)
def test_dead_units_pruned_outputs_unchanged(factory):
    torch.manual_seed(0)
    model = factory().eval()
    x = zoo.example_input(model)
    plan, analysis = dead_unit_plan(model, x)
    assert plan.groups, f"nothing prunable found; skipped: {analysis.skipped}"
    with torch.no_grad():
        reference = call_model(model, x)
        pruned = ep.apply_plan(model, plan)
        result = call_model(pruned, x)
    assert result.shape == reference.shape
    scale = reference.abs().max().clamp_min(1e-6)
    assert ((result - reference).abs().max() / scale) < 1e-5
    assert _params(pruned) < _params(model)


def test_residual_partners_form_one_group():
    model = zoo.ResidualCNN().eval()
    analysis = ep.analyze(model, zoo.example_input(model))
    stem = next(g for g in analysis.groups if any(s.tensor == "stem.0.weight" for s in g.slots))
    members = {(s.tensor, s.role) for s in stem.slots}
    assert {("a2.weight", "out"), ("bn_a.weight", "channel"), ("a1.weight", "in"), ("b1.weight", "in"),
            ("short.0.weight", "in")} <= members


def test_concat_offsets_and_flatten_inner():
    model = zoo.DenseConcat().eval()
    analysis = ep.analyze(model, zoo.example_input(model))
    l2 = next(g for g in analysis.groups if g.name == "l2.2")
    reader = next(s for s in l2.slots if s.tensor == "trans.2.weight")
    assert (reader.dim, reader.offset) == (1, 20)
    ts = zoo.TimeSeriesCNN().eval()
    analysis = ep.analyze(ts, zoo.example_input(ts))
    last = next(g for g in analysis.groups if g.name == "features.3")
    head = next(s for s in last.slots if s.tensor == "head.weight")
    assert head.inner == 20


def test_depthwise_multiplier_and_grouped_conv_stay_valid():
    model = zoo.MobileNetLike().eval()
    x = zoo.example_input(model)
    pruned = ep.prune(model, x, ratio=0.5).model
    dw = pruned.dw_mult
    assert dw.groups < 16 and dw.out_channels == 2 * dw.groups == 2 * dw.in_channels
    grouped = ep.prune(zoo.GroupedConv().eval(), torch.randn(1, 8, 6, 6), ratio=0.5).model.grouped
    assert grouped.groups == 4 and grouped.in_channels == 16 and grouped.out_channels == 16


def test_outputs_are_protected_and_ignore_protects_more():
    model = zoo.MLP().eval()
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.5)
    assert result.model.net[4].out_features == 3
    assert "net.4" in result.skipped
    kept = ep.prune(model, x, ratio=0.5, ignore=["net.0"]).model
    assert kept.net[0].out_features == 64 and kept.net[2].out_features < 32


def test_caller_model_untouched_and_inplace():
    model = zoo.ResidualCNN().eval()
    before = copy.deepcopy(model.state_dict())
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.5)
    assert result.model is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    same = ep.prune(model, x, ratio=0.5, inplace=True)
    assert same.model is model and model.stem[0].out_channels == 8
