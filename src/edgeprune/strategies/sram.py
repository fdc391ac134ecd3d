"""Peak-first: meet a ``ram=`` (TFLite Micro arena) budget by cutting the layers that set the peak.

Peak SRAM is a maximum over time, not a sum: the arena is set by the buffers alive at the worst op
(a wide early feature map and its neighbour, typically), and channels cut anywhere else leave it
where it is. Each step predicts the arena of the current plan (:func:`edgeprune.targets.sram.predict_arena`,
one trace, no conversion), takes the layers whose tensors are alive at the peak, and removes a
fraction of the remaining units of their groups (lowest scores first); when only other targets
(``flash=``, ``macs=`` ...) are left unmet, every group takes the step. It stops at the first plan
that meets every target, so the rest of the network keeps its width.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch.nn as nn

from edgeprune.budget import Target
from edgeprune.errors import BudgetError
from edgeprune.graph.groups import module_of
from edgeprune.result import Proposal
from edgeprune.strategies.base import lowest, make_plan, removable
from edgeprune.strategies.session import Scored, Session
from edgeprune.surgery import apply_plan


@dataclass(frozen=True)
class PeakFirst:
    """Cut the peak's layers first (see the module docstring).

    Attributes:
        step: fraction of a group's remaining units removed per step (at least one unit).
        max_steps: steps before giving up.
    """

    step: float = 0.125
    max_steps: int = 300
    name: str = "sram"

    def propose(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        from edgeprune.targets.sram import predict_arena

        scored = session.score(model)
        if not targets:
            raise BudgetError("the sram strategy needs a budget target (ram=64KB, flash=..., or --device)")
        precision = getattr(session.budget, "precision", "float32")
        owners = _groups_by_layer(scored)
        removed = {g.name: 0 for g in scored.groups}
        smallest, history = None, []
        ram = next((t for t in targets if t.name == "ram"), None)
        others = [t for t in targets if t.name != "ram"]
        for _ in range(self.max_steps):
            plan = self._plan(scored, removed, session)
            costs = session.costs(others, model, [plan]) if others else {}
            report = None
            if ram is not None:  # one prediction gives the arena and the layers that set it
                report = predict_arena(apply_plan(copy.deepcopy(model), plan), session.example_inputs, precision)
                costs["ram"] = float(report.total)
                history.append(report.total)
                smallest = min(smallest or report.total, report.total)
            missed = [t for t in targets if not t.met(costs[t.name])]
            if not missed:
                break
            fraction = self.step
            if report is not None and not ram.met(report.total):
                names = [g for layer in report.peak_layers for g in owners.get(layer, [])]
                names = [g for g in dict.fromkeys(names) if self._more(scored, g, removed, session)]
                fraction = min(0.5, max(self.step, 1 - ram.limit / report.total))  # bigger steps far from it
            else:
                names = [g.name for g in scored.groups if self._more(scored, g.name, removed, session)]
            if not names:  # the peak's layers are as thin as they go: take a step everywhere else
                names = [g.name for g in scored.groups if self._more(scored, g.name, removed, session)]
            if not names:
                raise BudgetError(_impossible(missed, costs, smallest))
            for g in names:
                removed[g] = self._next(scored, g, removed, session, fraction)
        else:
            raise BudgetError(_impossible(missed, costs, smallest))
        plan.meta["budget_fit"] = {k: float(v) for k, v in costs.items()}
        plan.meta["arena_steps"] = history
        pruned = apply_plan(model, plan)
        session.recover(pruned)
        kept = sum(g.size - removed[g.name] for g in scored.groups) / max(1, sum(g.size for g in scored.groups))
        return Proposal(pruned, [plan], {"ratio": 1 - kept, "arena_steps": history, **scored.summary()},
                        recovered=True, skipped=scored.analysis.skipped)

    # -- steps ---------------------------------------------------------------------------------
    def _plan(self, scored: Scored, removed: dict[str, int], session: Session):
        removals = {g.name: lowest(scored.scores[g.name], removed[g.name], g.partitions) for g in scored.groups}
        return make_plan(scored.groups, removals, scored.tensors, meta={
            "criterion": session.criterion_name, "strategy": self.name, "round_to": session.round_to})

    def _next(self, scored: Scored, name: str, removed: dict[str, int], session: Session,
              fraction: float | None = None) -> int:
        g = next(g for g in scored.groups if g.name == name)
        left = g.size - removed[name]
        want = removed[name] + max(g.partitions * max(1, session.round_to), int(left * (fraction or self.step)))
        return max(removed[name], removable(g, want, session.round_to))

    def _more(self, scored: Scored, name: str, removed: dict[str, int], session: Session) -> bool:
        return self._next(scored, name, removed, session) > removed[name]


def _groups_by_layer(scored: Scored) -> dict[str, list[str]]:
    """Layer (module path) -> the groups that set its output channels."""
    out: dict[str, list[str]] = {}
    for g in scored.groups:
        for slot in g.slots:
            if slot.dim == 0 and slot.role in ("out", "channel"):
                out.setdefault(module_of(slot.tensor), []).append(g.name)
    return out


def _impossible(missed: list[Target], costs: dict[str, float], smallest: float | None) -> str:
    parts = [f"{t.name} {costs[t.name]:,.0f} > {t.limit:,.0f}" for t in missed]
    msg = "the budget cannot be met by pruning channels: " + "; ".join(parts)
    if smallest is not None:
        msg += f"; the smallest arena reached is {smallest:,.0f} bytes (predicted)"
    return msg
