"""Depth beside width in the latency allocator: residual blocks dropped whole where they buy the
most predicted milliseconds for the least value, on a deterministic table (timing noise would test
the machine, not the algorithm)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.graph import analyze
from edgeprune.plan import Plan
from edgeprune.surgery import named_tensors
from edgeprune.targets import LatencyPredictor, LatencyTable, TableConfig, allocate, build_table, counts_plan, group_scores


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a = _Residual(16)  # at 16x16
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.b = _Residual(32)  # at 8x8
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.b(torch.relu(self.down(self.a(torch.relu(self.stem(x))))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model, x = _Net().eval(), torch.randn(1, 3, 16, 16)
    measured = build_table(model, x, TableConfig(threads=1, runs=2, warmup=1, levels=4, calibrate=(), rounds=2))
    doc = json.loads(json.dumps(measured.to_dict()))
    for key, entry in doc["ops"].items():  # time ~ MACs; the 16x16 stage runs 3x slower per MAC
        slow = 3.0 if "hw16x16" in key else 1.0
        hw = 256 if "hw16x16" in key else 64
        for point in entry["points"]:
            ci, co = (int(v) for v in point.split(","))
            entry["points"][point] = slow * 1e-6 * ci * co * hw + 1e-3
    doc["model"]["measured"] = {}
    groups = analyze(model, x).groups
    return model, x, LatencyPredictor(LatencyTable.from_dict(doc)), groups, group_scores(model, groups)


def test_a_block_of_little_influence_on_slow_layers_is_dropped_whole_and_the_prediction_reads_the_model(net):
    model, x, predictor, groups, scores = net
    target = 0.75 * predictor.dense_ms()
    a = allocate(predictor, groups, scores, target, blocks={"a": 0.1, "b": 1.9})
    assert a.blocks == ["a"] and a.predicted_ms <= target
    assert a.predicted_ms == pytest.approx(predictor.predict_counts(a.counts, a.blocks))
    assert not any(name.startswith("a.") for name in a.counts)  # nothing cut inside a dropped block
    plan = counts_plan(groups, scores, a.counts, named_tensors(model))
    plan.blocks = list(a.blocks)
    pruned = ep.apply_plan(model, plan)
    assert isinstance(pruned.a, nn.Identity) and not isinstance(model.a, nn.Identity)
    assert predictor.predict_model(pruned) == pytest.approx(a.predicted_ms)  # read back from the modules
    assert pruned(x).shape == model(x).shape
    # the plan (units and blocks) replays from its JSON onto a fresh copy, to the same model
    again = ep.apply_plan(model, Plan.from_json(plan.to_json()))
    with torch.no_grad():
        torch.testing.assert_close(again(x), pruned(x))


def test_blocks_that_matter_are_kept_and_width_alone_is_the_same_as_without_blocks(net):
    model, x, predictor, groups, scores = net
    target = 0.85 * predictor.dense_ms()
    heavy = allocate(predictor, groups, scores, target, blocks={"a": 10.0, "b": 10.0})
    width = allocate(predictor, groups, scores, target)
    assert heavy.blocks == [] and width.blocks == []
    assert heavy.counts == width.counts
    with pytest.raises(ValueError, match="value='compute'"):
        allocate(predictor, groups, scores, target, blocks={"a": 1.0}, value="importance")


def test_a_plan_that_names_a_missing_block_changes_nothing(net):
    model, x, predictor, groups, scores = net
    a = allocate(predictor, groups, scores, 0.9 * predictor.dense_ms())
    plan = counts_plan(groups, scores, a.counts, named_tensors(model))
    plan.blocks = ["c"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ep.PlanError, match="lacks"):
        ep.apply_plan(model, plan, inplace=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_depth_strategy_keeps_the_strategy_contract(net):
    """``strategy="latency-depth"``: the caller's model untouched; units and blocks replay from the plans."""
    from edgeprune.budget import Budget
    from edgeprune.strategies import PRESETS, LatencyAware
    from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig

    model, x, predictor, _, _ = net
    assert PRESETS["latency-depth"].search.depth
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strategy = LatencyAware(LatencySearch(max_attempts=1, depth=True), MeasureConfig(threads=1, rounds=2, runs=2))
    result = ep.prune(model, x, budget=Budget(speedup=1.6, threads=1, latency_model=predictor), strategy=strategy)
    assert result.stats["details"]["predicted_ms"] <= predictor.dense_ms() / 1.6 * 1.001
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(ep.apply_plan(model, result.plans)(x), result.model(x))
