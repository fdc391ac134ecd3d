"""One-shot pruning: score once, allocate once (uniform or global), cut, then fine-tune."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from edgeprune.budget import Target
from edgeprune.strategies.session import ALLOCATIONS, Session
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan


@dataclass(frozen=True)
class OneShot:
    """Prune once with ``allocation`` (``"uniform"``: the same fraction of every group, Li et al.
    2017; ``"global"``: one ranking over all groups after per-group normalisation).

    With a cost budget the ratio is the smallest that meets it (``edgeprune.budget.fit_ratio``).
    Costs: one analysis, one scoring (plus the criterion's data pass), ~16 plans priced on the
    meta device, then the fine-tuning, if any.
    """

    allocation: str = "uniform"

    @property
    def name(self) -> str:
        return self.allocation

    def propose(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; choose one of {sorted(ALLOCATIONS)}")
        scored = session.score(model)
        if targets:
            fit = session.fit(model, scored, targets, self.allocation)
            plan, used = fit.plan, fit.ratio
        else:
            plan, used = session.plan_at(scored, float(ratio or 0.0), self.allocation), ratio
        pruned = apply_plan(model, plan)
        session.recover(pruned)
        return Proposal(pruned, [plan], {"ratio": used, **scored.summary()}, recovered=True,
                        skipped=scored.analysis.skipped)
