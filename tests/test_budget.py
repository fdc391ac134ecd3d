"""Budgets: targets resolve against the original, plans are priced exactly on the meta device,
fit_ratio meets the budget tightly, and an impossible budget fails with a clear error."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.budget import Budget, BudgetError, BytesCost, MacsCost, ParamsCost, fit_ratio, plan_cost, price
from edgeprune.criteria import CRITERIA, ScoreContext
from edgeprune.measure import count_macs
from edgeprune.strategies import make_plan, uniform
from edgeprune.surgery import named_tensors
from tests import zoo


def _scored(model, x):
    groups, tensors = ep.analyze(model, x).groups, named_tensors(model)
    ctx = ScoreContext(tensors)
    return groups, tensors, {g.name: CRITERIA["l2"](g, ctx) for g in groups}


@pytest.mark.parametrize("cost", [MacsCost(), ParamsCost(), BytesCost()], ids=lambda c: c.name)
def test_meta_price_equals_the_real_pruned_model(cost):
    torch.manual_seed(0)
    model, x = zoo.ResidualCNN().eval(), torch.randn(1, 3, 16, 16)
    groups, tensors, scores = _scored(model, x)
    plan = make_plan(groups, uniform(groups, scores, 0.4), tensors)
    real = ep.apply_plan(model, plan)
    assert price(cost, model, x, [plan]) == pytest.approx(cost.cost(real, x))
    if cost.name == "macs":
        assert price(cost, model, x, [plan]) == count_macs(real, x).total


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_prune_meets_a_mac_budget_tightly(allocation, keep):
    torch.manual_seed(0)
    model, x = zoo.ResidualCNN().eval(), torch.randn(1, 3, 16, 16)
    result = ep.prune(model, x, budget=Budget(macs=keep), strategy=allocation)
    base, after = count_macs(model, x).total, count_macs(result.model, x).total
    assert after <= keep * base
    # whole channels: uniform moves every group (16 or 32 wide here) at once, in steps of 1/16 to 1/32
    # of its width, and MACs go with width squared; global moves one channel at a time
    tolerance = 0.25 if allocation == "uniform" else 0.10
    assert after >= (1 - tolerance) * keep * base, "the budget is met with far more cut than needed"
    assert result.stats["macs_after"] == after and result.stats["macs_before"] == base


def test_fit_ratio_is_the_smallest_ratio_that_fits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    x = torch.randn(1, 16)
    groups, tensors, scores = _scored(model, x)
    plan_at = lambda r: make_plan(groups, uniform(groups, scores, r), tensors)
    targets = Budget(params=0.6).targets(model, x)
    fit = fit_ratio(plan_at, targets, model, x)
    assert fit.costs["params"] <= targets[0].limit
    one_less = plan_at(fit.ratio - 1 / 64)  # one unit fewer per group breaks the budget
    assert plan_cost(targets, model, x, [one_less])["params"] > targets[0].limit


def test_absolute_and_fractional_targets_and_bytes():
    model, x = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)), torch.randn(1, 8)
    params = sum(p.numel() for p in model.parameters())
    (frac,) = Budget(params=0.5).targets(model, x)
    (absolute,) = Budget(params=150).targets(model, x)
    (size,) = Budget(bytes=0.5).targets(model, x)
    assert frac.limit == 0.5 * params and absolute.limit == 150 and size.original == 4 * params
    result = ep.prune(model, x, budget=Budget(params=150))
    assert sum(p.numel() for p in result.model.parameters()) <= 150


def test_impossible_or_malformed_budgets_fail_clearly():
    model, x = zoo.ResidualCNN().eval(), torch.randn(1, 3, 16, 16)
    untouched = copy.deepcopy(model.state_dict())
    with pytest.raises(BudgetError, match="macs"):
        ep.prune(model, x, budget=Budget(macs=10))  # 10 MACs: nothing that small still runs
    assert all(torch.equal(untouched[k], v) for k, v in model.state_dict().items())
    with pytest.raises(BudgetError, match="latency_model"):
        Budget(latency_ms=5).targets(model, x)  # edgeprune.prune builds the model; bare targets() cannot
    with pytest.raises(BudgetError, match="positive"):
        Budget(macs=-1)
    with pytest.raises(ValueError, match="not both"):
        ep.prune(model, x, ratio=0.3, budget=Budget(macs=0.5))


class _CountingLatency:
    """A stand-in latency predictor: 1 ms per million MACs (what a real predictor plugs into)."""

    name, on_meta = "latency", True

    def cost(self, model, example_inputs):
        return count_macs(model, example_inputs).total / 1e6


def test_a_pluggable_latency_model_prices_speedup_and_latency():
    torch.manual_seed(0)
    model, x = zoo.ResidualCNN().eval(), torch.randn(1, 3, 16, 16)
    predictor = _CountingLatency()
    original = predictor.cost(model, x)
    result = ep.prune(model, x, budget=Budget(speedup=2.0, latency_model=predictor), strategy="global")
    assert predictor.cost(result.model, x) <= original / 2
    result = ep.prune(model, x, budget=Budget(latency_ms=original / 3, latency_model=predictor))
    assert predictor.cost(result.model, x) <= original / 3
