"""The smallest allocation ratio whose plan meets every target, by bisection on priced plans."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from edgeprune.budget.costs import Target, plan_cost
from edgeprune.errors import BudgetError
from edgeprune.plan import Plan


@dataclass
class Fit:
    """The outcome of :func:`fit_ratio`: the ratio, its plan, the plan's costs and the evaluations spent."""

    ratio: float
    plan: Plan
    costs: dict[str, float]
    evaluations: int


def fit_ratio(plan_at: Callable[[float], Plan], targets: Sequence[Target], model: nn.Module, example_inputs: Any,
              *, hi: float = 0.95, iterations: int = 14) -> Fit:
    """The smallest ratio whose plan meets every target, by bisection.

    The cost of ``plan_at(r)`` must not grow with ``r`` (true for ``uniform`` and ``global``: a
    larger ratio removes a superset of units, up to rounding). Channel counts are whole, so the
    result meets the targets and lies just below them, as close as one unit per group allows.

    Args:
        plan_at: ratio -> plan for ``model`` (e.g. uniform or global allocation of precomputed scores).
        targets: from :meth:`Budget.targets`.
        model: the model the plans apply to.
        example_inputs: its example input.
        hi: the largest ratio tried.
        iterations: bisection steps (2**-14 is finer than one channel of any layer under 16k).

    Returns:
        A :class:`Fit`.

    Raises:
        BudgetError: even ``plan_at(hi)`` misses a target; the message names it and the cost reached.

    Example:
        >>> import edgeprune
        >>> from edgeprune.budget import Budget
        >>> from edgeprune.strategies import uniform, make_plan
        >>> from edgeprune.criteria import CRITERIA, ScoreContext
        >>> from edgeprune.surgery import named_tensors
        >>> m, x = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2)), torch.randn(1, 8)
        >>> groups, t = edgeprune.analyze(m, x).groups, named_tensors(m)
        >>> s = {g.name: CRITERIA["l2"](g, ScoreContext(t)) for g in groups}
        >>> fit = fit_ratio(lambda r: make_plan(groups, uniform(groups, s, r), t), Budget(macs=0.5).targets(m, x), m, x)
        >>> fit.costs["macs"] <= 0.5 * 640
        True
    """
    evaluations = 0

    def costs_at(r: float) -> tuple[Plan, dict[str, float]]:
        nonlocal evaluations
        evaluations += 1
        plan = plan_at(r)
        return plan, plan_cost(targets, model, example_inputs, [plan])

    def ok(costs: dict[str, float]) -> bool:
        return all(t.met(costs[t.name]) for t in targets)

    plan, costs = costs_at(0.0)
    if ok(costs):
        return Fit(0.0, plan, costs, evaluations)
    best_plan, best_costs = costs_at(hi)
    if not ok(best_costs):
        missed = [f"{t.name} {best_costs[t.name]:.4g} > {t.limit:.4g} (original {t.original:.4g})"
                  for t in targets if not t.met(best_costs[t.name])]
        raise BudgetError(f"the budget cannot be met even removing {hi:.0%} of the units: " + "; ".join(missed))
    lo, high = 0.0, hi
    for _ in range(iterations):
        mid = (lo + high) / 2
        plan, costs = costs_at(mid)
        if ok(costs):
            high, best_plan, best_costs = mid, plan, costs
        else:
            lo = mid
    return Fit(high, best_plan, best_costs, evaluations)
