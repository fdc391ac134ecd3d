"""Budgets: what a prune must reach, how to price a plan cheaply, and the ratio that meets it.

A :class:`Budget` names targets (MACs, parameters, bytes, latency or speed-up) and the accuracy
guard ``max_drop``. Each target is priced by a :class:`CostModel`. MACs, parameters and bytes are
priced here on a *meta-device* copy of the model with the plan applied: the copy holds shapes and
no data, so pricing a plan costs one shape-only forward pass and no memory. A latency target
needs a latency predictor, which the hardware-aware side of edgeprune supplies as a
``CostModel`` (``Budget(latency_ms=8, latency_model=predictor)``).

Example:
    >>> import torch, torchvision
    >>> from edgeprune.budget import Budget, plan_cost
    >>> b = Budget(macs=0.5)                       # half the MACs of the original
    >>> [t.name for t in b.targets(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))]
    ['macs']
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn

from edgeprune.errors import EdgepruneError
from edgeprune.graph.probe import meta_copy
from edgeprune.plan import Plan


class BudgetError(EdgepruneError):
    """A budget cannot be met (or is malformed); the message names the target and what was reached."""


@runtime_checkable
class CostModel(Protocol):
    """Prices a model: ``cost(model, example_inputs) -> float`` (lower is cheaper).

    ``on_meta`` says whether the model may be a meta-device copy (shapes only, no data). A
    latency predictor that reads channel counts can be priced on meta; one that runs the model
    on a runtime sets ``on_meta = False`` and gets a real copy.
    """

    name: str
    on_meta: bool

    def cost(self, model: nn.Module, example_inputs: Any) -> float: ...


@dataclass(frozen=True)
class MacsCost:
    """MACs of one forward pass (``edgeprune.measure.count_macs``)."""

    name: str = "macs"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        from edgeprune.measure.macs import count_macs

        return float(count_macs(model, example_inputs).total)


@dataclass(frozen=True)
class ParamsCost:
    """Parameter values (dense; a tensor tied in two places counts once)."""

    name: str = "params"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        return float(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class BytesCost:
    """Bytes of the state dict (parameters and buffers at their dtypes): the size of the saved weights."""

    name: str = "bytes"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        seen = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        return float(sum(t.numel() * t.element_size() for t in seen.values()))


@dataclass(frozen=True)
class Target:
    """One resolved budget target: ``cost_model`` must price the pruned model at or below ``limit``."""

    name: str
    cost_model: CostModel
    limit: float
    original: float

    def met(self, value: float) -> bool:
        return value <= self.limit


@dataclass(frozen=True)
class Budget:
    """What a prune must reach. Give one or more targets; all must be met.

    A value <= 1 is a fraction of the original model's cost (``macs=0.5``: half the MACs, 2x
    fewer); a value > 1 is absolute (MACs, parameter count, bytes).

    Attributes:
        macs: MACs of one forward pass at the example input.
        params: parameter count.
        bytes: bytes of the saved weights.
        latency_ms: latency in milliseconds, priced by ``latency_model``.
        speedup: latency of the original divided by this (``speedup=2``: twice as fast), by ``latency_model``.
        max_drop: accuracy points (of ``evaluate``) the prune may lose; checked on validation
            data by the ``guarded`` strategy, and reported (or refused, see ``edgeprune.prune``).
        latency_model: a ``CostModel`` that predicts latency (supplied by ``edgeprune.targets``).
    """

    macs: float | None = None
    params: float | None = None
    bytes: float | None = None
    latency_ms: float | None = None
    speedup: float | None = None
    max_drop: float | None = None
    latency_model: CostModel | None = None

    def __post_init__(self) -> None:
        for name in ("macs", "params", "bytes", "latency_ms", "speedup", "max_drop"):
            value = getattr(self, name)
            if value is not None and not value > 0 and not (name == "max_drop" and value == 0):
                raise BudgetError(f"Budget.{name} must be positive, got {value}")
        if self.speedup is not None and self.speedup < 1:
            raise BudgetError(f"Budget.speedup must be >= 1 (2 means twice as fast), got {self.speedup}")
        if (self.latency_ms is not None or self.speedup is not None) and self.latency_model is None:
            raise BudgetError("a latency_ms or speedup budget needs latency_model= (a CostModel that predicts "
                              "latency, e.g. from edgeprune.targets)")

    @property
    def has_cost(self) -> bool:
        """Whether any cost target is set (not only ``max_drop``)."""
        return any(getattr(self, n) is not None for n in ("macs", "params", "bytes", "latency_ms", "speedup"))

    def targets(self, model: nn.Module, example_inputs: Any) -> list[Target]:
        """The targets as absolute limits, priced against ``model`` (the unpruned original).

        Returns:
            One :class:`Target` per cost the budget names (empty when only ``max_drop`` is set).
        """
        wanted: list[tuple[str, CostModel, float, bool]] = []  # name, model, value, value is a divisor
        for name, cm in (("macs", MacsCost()), ("params", ParamsCost()), ("bytes", BytesCost())):
            if getattr(self, name) is not None:
                wanted.append((name, cm, float(getattr(self, name)), False))
        if self.latency_ms is not None:
            wanted.append(("latency_ms", self.latency_model, float(self.latency_ms), False))
        if self.speedup is not None:
            wanted.append(("speedup", self.latency_model, float(self.speedup), True))
        out = []
        for name, cm, value, divisor in wanted:
            original = price(cm, model, example_inputs, [])
            if divisor:
                limit = original / value
            elif name == "latency_ms":
                limit = value  # milliseconds, never a fraction
            else:
                limit = value * original if value <= 1 else value
            out.append(Target(name, cm, limit, original))
        return out

    def describe(self) -> str:
        """A short human form, e.g. ``"macs<=0.5x, max_drop=1.0"``."""
        parts = []
        for name in ("macs", "params", "bytes", "latency_ms", "speedup", "max_drop"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}={v}" if name in ("max_drop", "latency_ms", "speedup") or v > 1 else f"{name}<={v}x")
        return ", ".join(parts) or "no target"


def price(cost_model: CostModel, model: nn.Module, example_inputs: Any, plans: Sequence[Plan]) -> float:
    """The cost of ``model`` after ``plans`` are applied (to a copy; ``model`` is not changed).

    Uses a meta-device copy when the cost model allows it and the model runs on meta.
    """
    from edgeprune.surgery import apply_plan

    copy_, inputs = None, example_inputs
    if cost_model.on_meta:
        try:
            copy_, inputs = meta_copy(model, example_inputs)
            for plan in plans:
                apply_plan(copy_, plan)
            with torch.no_grad():
                return float(cost_model.cost(copy_.eval(), inputs))
        except (RuntimeError, NotImplementedError, TypeError):
            copy_, inputs = None, example_inputs  # an op without a meta kernel: price a real copy
    copy_ = copy.deepcopy(model)
    for plan in plans:
        apply_plan(copy_, plan)
    with torch.no_grad():
        return float(cost_model.cost(copy_.eval(), inputs))


def plan_cost(targets: Sequence[Target], model: nn.Module, example_inputs: Any,
              plans: Sequence[Plan]) -> dict[str, float]:
    """``{target name: cost}`` of ``model`` after ``plans``, for every target.

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> t = Budget(params=0.5).targets(m, torch.randn(1, 8))
        >>> plan_cost(t, m, torch.randn(1, 8), [])
        {'params': 178.0}
    """
    return {t.name: price(t.cost_model, model, example_inputs, plans) for t in targets}


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
