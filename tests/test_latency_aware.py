"""The latency allocator, the plan check and the measure-and-tighten loop, on the ``mnist`` task's CNN.

Oracles: the predictor itself for the allocator's promise (never a plan predicted above its
target), a brute-force search over every fast-step count for optimality on a two-group model,
and ONNX Runtime for the verified prune.
"""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn as nn

from edgeprune.budget import BudgetError, CostModel
from edgeprune.graph import analyze
from edgeprune.budget import Budget
from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
from edgeprune.targets import allocate, check_plan
from edgeprune.surgery import named_tensors
from edgeprune.targets import LatencyPredictor, LatencyTable, TableConfig, build_table, counts_plan, group_scores
from edgeprune.tasks import get_task
from edgeprune import prune_weights


@pytest.fixture(scope="module")
def mnist():
    task = get_task("mnist")
    model = task.build(seed=0)
    x = task.example_input()
    table = build_table(model, x, TableConfig(threads=1, runs=3, warmup=1, levels=4, calibrate=(0.5,), rounds=3))
    groups = analyze(model, x).groups
    return model, x, table, groups, group_scores(model, groups)


def test_allocator_never_returns_a_plan_predicted_to_miss(mnist):
    model, x, table, groups, scores = mnist
    predictor = LatencyPredictor(table)
    dense = predictor.dense_ms()
    met = 0
    for fraction in [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]:
        target = dense * fraction
        try:
            a = allocate(predictor, groups, scores, target, min_keep=0.1)
        except BudgetError as exc:
            assert "cannot be met" in str(exc)
            continue
        met += 1
        assert a.predicted_ms <= target + 1e-9
        assert a.predicted_ms == pytest.approx(predictor.predict_counts(a.counts))
        for name, kept in a.counts.items():  # on a fast step (or the full size)
            steps = table.groups[name]
            assert kept % steps.step == 0 or kept == steps.size, (name, kept, steps.step)
            assert kept >= min(steps.levels)
    assert met >= 5


TWO_GROUPS = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(64, 8, 3, padding=1)).eval()


@pytest.fixture(scope="module")
def two_group_table():
    x = torch.randn(1, 3, 16, 16)
    return build_table(TWO_GROUPS, x, TableConfig(threads=1, runs=2, warmup=1, levels=4, calibrate=(), rounds=2)), x


@pytest.mark.parametrize("step", [4, 8, 16])
@pytest.mark.parametrize("calibration", ["none", "offset"])
def test_allocator_matches_brute_force_on_two_groups(two_group_table, step, calibration):
    """Two groups, every combination of fast-step counts: greedy keeps at least 95% of the best importance
    (value="importance"), and of the most MACs (value="compute", equal scores).

    The cost of the middle conv is the product of both counts, so the best plan often sits in a
    corner (one group whole, the other cut hard) that single-step exchanges cannot reach from a
    balanced greedy plan."""
    measured, x = two_group_table
    # the greedy is judged on a smooth, deterministic table (time ~ MACs plus memory per channel, a fixed
    # staircase step, a fixed calibration): timing noise would test the machine, not the algorithm
    doc = json.loads(json.dumps(measured.to_dict()))
    for entry in doc["ops"].values():
        for key in entry["points"]:
            ci, co = (int(v) for v in key.split(","))
            entry["points"][key] = 1e-4 * ci * co + 2e-3 * (ci + co) + 0.01
    for group in doc["model"]["groups"].values():
        group["step"] = step
    for family in doc["staircase"].values():
        for axis in family.values():
            axis.update(step=step, penalty=1.3)
    doc["model"]["measured"] = {} if calibration == "none" else {
        "dense": {"counts": {}, "ms": 1.5}, "half": {"counts": {"0": 32, "2": 32}, "ms": 0.6}}
    table = LatencyTable.from_dict(doc)
    predictor = LatencyPredictor(table)
    groups = analyze(TWO_GROUPS, x).groups
    scores = group_scores(TWO_GROUPS, groups)
    names = sorted(table.groups)
    options = {n: table.groups[n].fast_counts(min(table.groups[n].levels)) for n in names}
    norm = {n: torch.sort(scores[n] / scores[n].mean(), descending=True).values for n in names}

    def importance(counts):
        return sum(float(norm[n][:counts[n]].sum()) for n in names)

    checked = 0
    for fraction in (0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35):
        target = predictor.dense_ms() * fraction
        feasible = [dict(zip(names, c)) for c in itertools.product(*(options[n] for n in names))
                    if predictor.predict_counts(dict(zip(names, c))) <= target]
        if not feasible:
            with pytest.raises(BudgetError):
                allocate(predictor, groups, scores, target, min_keep=0.0)
            continue
        checked += 1
        best = max(importance(c) for c in feasible)
        a = allocate(predictor, groups, scores, target, min_keep=0.0, value="importance")
        got = importance({n: a.counts.get(n, table.groups[n].size) for n in names})
        assert a.predicted_ms <= target
        assert got >= 0.95 * best, (fraction, got, best)
        # value="compute" with equal scores keeps the most MACs the target allows
        flat = {n: torch.ones_like(scores[n]) for n in names}
        a = allocate(predictor, groups, flat, target, min_keep=0.0, value="compute")
        got = predictor.macs(a.counts)
        assert a.predicted_ms <= target
        assert got >= 0.95 * max(predictor.macs(c) for c in feasible), fraction
    assert checked >= 5


def test_predictor_is_a_cost_model(mnist):
    model, x, table, _, _ = mnist
    predictor = LatencyPredictor(table)
    assert isinstance(predictor, CostModel)
    assert predictor.cost(model, x) == pytest.approx(predictor.dense_ms())


def test_check_plan_warns_when_a_plan_will_not_pay(mnist):
    model, x, table, groups, scores = mnist
    predictor = LatencyPredictor(table)
    tensors = named_tensors(model)
    # masks: dense kernels on ONNX Runtime CPU
    masked = prune_weights(model, 0.8).plan
    report = check_plan(masked, predictor)
    assert any("masks buy no latency" in w for w in report.warnings)
    assert any("will not pay" in w for w in report.warnings)
    assert report.predicted_ms == pytest.approx(predictor.dense_ms())
    # channel counts off the fast steps
    off = {name: g.size - g.step // 2 - 1 for name, g in table.groups.items() if g.step > 2}
    if off:
        report = check_plan(counts_plan(groups, scores, off, tensors), predictor)
        assert {o.group for o in report.off_step} == set(off)
        assert any("off the fast steps" in w for w in report.warnings)
    # a latency-aware plan: on the steps, and faster
    a = allocate(predictor, groups, scores, predictor.dense_ms() * 0.6)
    report = check_plan(counts_plan(groups, scores, a.counts, tensors), predictor)
    assert report.off_step == [] and report.speedup > 1.5
    assert report.predicted_ms == pytest.approx(a.predicted_ms)


def test_latency_budget_rejects_bad_input(mnist):
    model, x, table, _, _ = mnist
    predictor = LatencyPredictor(table)
    with pytest.raises(BudgetError):
        prune_to_latency(model, x, predictor, Budget())  # no latency target
    with pytest.raises(BudgetError):
        prune_to_latency(model, x, predictor, Budget(latency_ms=3, speedup=2))
    with pytest.raises(BudgetError):
        Budget(speedup=0.5)


@pytest.mark.slow  # wall-clock: benchmarks/latency_aware.py --mnist measures prune_to_latency's speed-up
def test_prune_to_latency_meets_a_speedup_measured_on_onnx_runtime(mnist):
    model, x, table, _, _ = mnist
    predictor = LatencyPredictor(table)
    result = prune_to_latency(model, x, predictor, Budget(speedup=1.5), LatencySearch(max_attempts=4),
                              measure=MeasureConfig(threads=1, rounds=8, runs=5))
    lines = [f"predicted {a.allocation.predicted_ms:.3f} measured {a.measured_ms:.3f} dense {a.dense_ms:.3f}"
             for a in result.attempts]
    assert result.met, lines
    assert result.measured_speedup >= 1.5
    assert result.model(x).shape == model(x).shape
    assert all(p.name in table.groups for p in result.plan.groups)
    last = result.attempts[-1]
    assert last.allocation.predicted_ms <= last.target_ms


def test_a_latency_budget_drives_the_mac_strategies_through_the_cost_model(mnist):
    """``Budget(speedup=..., latency_model=predictor)`` replaces the MAC budget for uniform/global allocation."""
    from edgeprune.budget import Budget, fit_ratio
    from edgeprune.strategies import global_ranking, make_plan

    model, x, table, groups, scores = mnist
    predictor = LatencyPredictor(table)
    tensors = named_tensors(model)
    targets = Budget(speedup=1.6, latency_model=predictor).targets(model, x)
    assert targets[0].original == pytest.approx(predictor.dense_ms())
    fit = fit_ratio(lambda r: make_plan(groups, global_ranking(groups, scores, r, round_to=16), tensors),
                    targets, model, x)
    assert fit.costs["speedup"] <= targets[0].limit
    assert predictor.predict_plan(fit.plan) == pytest.approx(fit.costs["speedup"])


def test_the_latency_strategy_is_a_strategy_like_the_others(mnist):
    """``prune(strategy="latency")``: the same contract as every preset (the caller's model untouched, the
    plans replay on a fresh copy). Whether the measured target is met is wall-clock: the slow test above."""
    import edgeprune as ep
    from edgeprune.strategies import LatencyAware

    model, x, table, _, _ = mnist
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = Budget(speedup=1.5, threads=1, latency_model=LatencyPredictor(table))
    strategy = LatencyAware(LatencySearch(max_attempts=2), MeasureConfig(threads=1, rounds=3, runs=3))
    result = ep.prune(model, x, budget=budget, strategy=strategy)
    details = result.stats["details"]
    assert 1 <= details["latency_attempts"] <= 2 and details["predicted_ms"] <= table_dense(table) / 1.5 * 1.01
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(ep.apply_plan(model, result.plans)(x), result.model(x))
    with pytest.raises(BudgetError, match="latency target"):
        ep.prune(model, x, budget=Budget(macs=0.5), strategy="latency")


def table_dense(table) -> float:
    return LatencyPredictor(table).dense_ms()


def test_onnx_runtime_conv_groups_step_on_its_channel_block(mnist):
    """ORT runs conv chains in its blocked layout only at multiples of the block: every conv's groups
    step on it (a single-op sweep cannot see the reorders an odd width adds inside a model)."""
    from edgeprune.targets import lut_builder

    model, x, table, groups, _ = mnist
    block = lut_builder.layout_step()
    convs = {g for layer in table.layers if layer.kind == "conv" for g in (layer.in_group, layer.out_group) if g}
    assert convs and all(table.groups[g].step % block == 0 for g in convs)


def test_headroom_turns_a_measurement_just_under_the_goal_into_a_miss_and_tightens(mnist, monkeypatch):
    """``LatencySearch(headroom=)``: 1% under the goal is met without headroom and missed with 3%; each miss
    aims lower (deterministic measurements stand in for the runtime)."""
    from types import SimpleNamespace

    import edgeprune.strategies.latency_search as ls

    model, x, table, _, _ = mnist
    monkeypatch.setattr(ls, "_measure", lambda predictor, models, inputs, measure: {
        "dense": SimpleNamespace(ms=10.0), "pruned": SimpleNamespace(ms=10.0 / 1.5 * 0.99)})
    plain = prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=1.5), LatencySearch(max_attempts=3))
    assert plain.met and len(plain.attempts) == 1
    strict = prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=1.5),
                              LatencySearch(max_attempts=3, headroom=0.03))
    assert not strict.met and len(strict.attempts) == 3
    targets = [a.target_ms for a in strict.attempts]
    assert targets == sorted(targets, reverse=True) and targets[-1] < targets[0]
    with pytest.raises(ValueError, match="headroom"):
        LatencySearch(headroom=0.6)
