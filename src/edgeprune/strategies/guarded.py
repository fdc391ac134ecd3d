"""Accuracy-guarded pruning: the largest cut whose measured accuracy drop stays within ``max_drop``.

Bisection on the allocation ratio (the cut grows with it); every candidate is cut on a copy and
measured with the user's ``evaluate``. Only measured plans are ever returned: the answer is the
largest ratio that passed, or no cut at all. Accuracy is not exactly monotone in the ratio, so
the bisection may miss a larger passing cut, but it never returns a failing one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch.nn as nn

from edgeprune.budget import BudgetError, Target
from edgeprune.plan import Plan
from edgeprune.strategies.session import ALLOCATIONS, Session
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan


@dataclass(frozen=True)
class Guarded:
    """Cut as much as the accuracy guard allows (``Budget.max_drop`` points, measured by ``evaluate``).

    With a cost budget too, the cut is at least the one that meets it (or a ``BudgetError`` says
    both cannot hold). With ``finetune_each`` every candidate is fine-tuned before it is measured
    (more cut for much more compute); otherwise the guard holds before fine-tuning, and the final
    fine-tuning is kept only if it does not break the guard.
    Costs: ``iterations + 2`` evaluations (and fine-tunings with ``finetune_each``).

    Attributes:
        allocation: ``"global"`` or ``"uniform"``.
        iterations: bisection steps on the ratio.
        hi: the largest ratio tried.
        finetune_each: fine-tune every candidate before measuring it.
    """

    allocation: str = "global"
    iterations: int = 7
    hi: float = 0.9
    finetune_each: bool = False
    name: str = "guarded"

    def propose(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        max_drop = session.max_drop
        if max_drop is None:
            raise ValueError("the guarded strategy needs budget=Budget(max_drop=...) (accuracy points)")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}")
        scored = session.score(model)
        base = session.accuracy(model)
        trials: list[dict] = []
        measured: dict[float, dict] = {}  # ratio -> the weights that were measured (BatchNorm recalibrated)

        def measure(r: float, plan: Plan) -> float:
            trial = apply_plan(model, plan)  # a copy
            if self.finetune_each:
                session.recover(trial)
            drop = base - session.measure(trial)
            trials.append({"ratio": r, "drop": drop, "removed_units": plan.removed_units})
            if drop <= max_drop:
                measured.clear()
                measured[r] = trial.state_dict()
            return drop

        lo = 0.0
        if targets:
            fit = session.fit(model, scored, targets, self.allocation)
            lo, best = fit.ratio, fit.plan
            if measure(lo, best) > max_drop:
                raise BudgetError(f"the budget and the guard cannot both hold: meeting the budget costs "
                                  f"{trials[-1]['drop']:.2f} points (> max_drop {max_drop})")
        else:
            best = session.plan_at(scored, 0.0, self.allocation)
        hi = self.hi
        plan_hi = session.plan_at(scored, hi, self.allocation)
        if measure(hi, plan_hi) <= max_drop:
            lo, best = hi, plan_hi
        else:
            for _ in range(self.iterations):
                mid = (lo + hi) / 2
                plan = session.plan_at(scored, mid, self.allocation)
                if measure(mid, plan) <= max_drop:
                    lo, best = mid, plan
                else:
                    hi = mid
        best.meta.update({"strategy": "guarded", "max_drop": max_drop, "ratio": lo,
                          "measured_drop": next((t["drop"] for t in trials if t["ratio"] == lo), 0.0)})
        pruned = apply_plan(model, best)
        if lo in measured:
            pruned.load_state_dict(measured[lo])  # exactly the weights that passed the guard
        kept_finetune = self._recover_within_guard(session, pruned, base, max_drop)
        return Proposal(pruned, [best], {"ratio": lo, "trials": trials, "base_accuracy": base,
                                         "finetune_kept": kept_finetune, **scored.summary()},
                        recovered=True, skipped=scored.analysis.skipped)

    def _recover_within_guard(self, session: Session, model: nn.Module, base: float, max_drop: float) -> bool | None:
        if session.finetune is None or self.finetune_each:
            return None  # nothing to do, or the measured weights are already fine-tuned
        before = copy.deepcopy(model.state_dict())
        session.recover(model)
        if base - session.accuracy(model) > max_drop:
            model.load_state_dict(before)  # fine-tuning broke the guard: keep the measured weights
            return False
        return True
