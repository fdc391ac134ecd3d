"""Latency-aware: allocate on the target runtime's latency table, measure there, tighten until met.

The allocation is ``edgeprune.targets.allocate`` and the measure-then-adjust loop
``edgeprune.strategies.latency_search``; this config makes
them a strategy like the others, so ``prune(..., strategy="latency", budget=Budget(speedup=2))``
and ``--target speedup=2x`` take the same path. The latency table is built on the budget's runtime
and thread count when the budget carries no latency model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from edgeprune.budget import BudgetError, Target
from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
from edgeprune.result import Proposal


@dataclass(frozen=True)
class LatencyAware:
    """Meet one latency target (``latency_ms`` or ``speedup``) as measured on the budget's runtime.

    Attributes:
        search: rounds, margin and the least each group keeps (``LatencySearch``).
        measure: how each round is measured; the budget's thread count when ``None``.
    """

    search: LatencySearch = field(default_factory=LatencySearch)
    measure: MeasureConfig | None = None
    name: str = "latency"

    def propose(self, session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        budget = session.budget
        if budget is None or not budget.has_latency or ratio is not None:
            raise BudgetError("the latency strategy needs one latency target: Budget(speedup=...) or Budget(latency_ms=...)")
        if budget.latency_model is None or not hasattr(budget.latency_model, "table"):
            raise BudgetError("the latency strategy allocates on a latency table: leave latency_model unset "
                              "(edgeprune builds one on the budget's runtime) or pass a LatencyPredictor")
        scored = session.score(model)
        found = prune_to_latency(model, session.example_inputs, budget.latency_model, budget, self.search,
                                 scored=(scored.groups, scored.scores), measure=self.measure,
                                 criterion=session.criterion_name)
        session.recover(found.model)
        return Proposal(found.model, [found.plan], {
            "latency_attempts": len(found.attempts), "measured_ms": found.measured_ms,
            "predicted_ms": found.predicted_ms, "met": found.met, **scored.summary()},
            recovered=True, skipped=scored.analysis.skipped)
