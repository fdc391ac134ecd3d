"""Accuracy-guarded pruning: the largest cut whose measured accuracy drop stays within ``max_drop``.

Bisection on the allocation ratio (the cut grows with it); every candidate is cut on a copy and
measured with the user's ``evaluate``. Only measured plans are ever returned: the answer is the
largest ratio that passed, or no cut at all. Accuracy is not exactly monotone in the ratio, so
the bisection may miss a larger passing cut, but it never returns a failing one.
"""
from __future__ import annotations

import copy
import math
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
    Costs: ``iterations + 2`` evaluations (and fine-tunings with ``finetune_each``); with an
    evaluator on ``w`` workers, the next ``log2(w + 1)`` levels of the bisection are measured at
    once and only the serial path's trials are kept (``details["speculative_evaluations"]`` counts
    the rest), so the plan is the serial one.

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
        if self.finetune_each and session.evaluator is not None:
            raise ValueError("finetune_each fine-tunes every candidate where it is measured; it does not run on an "
                             "executor's workers yet (use the serial executor)")
        scored = session.score(model)
        base = session.accuracy(model)
        trials: list[dict] = []
        plans: dict[float, Plan] = {}
        drops: dict[float, float] = {}  # ratio -> measured drop, on the path or speculatively
        weights: dict[float, dict] = {}  # finetune_each: ratio -> the fine-tuned weights that passed

        def plan_of(r: float) -> Plan:
            if r not in plans:
                plans[r] = session.plan_at(scored, r, self.allocation)
            return plans[r]

        def prefetch(ratios: list[float]) -> None:
            todo = [r for r in dict.fromkeys(ratios) if r not in drops]
            if self.finetune_each:
                for r in todo:
                    trial = apply_plan(model, plan_of(r))  # a copy
                    session.recover(trial)
                    drops[r] = base - session.measure(trial)
                    if drops[r] <= max_drop:
                        weights.clear()
                        weights[r] = trial.state_dict()
                return
            got = session.measure_plans(model, [plan_of(r) for r in todo], [f"ratio {r:.4f}" for r in todo])
            drops.update({r: base - acc for r, acc in zip(todo, got)})

        def measure(r: float) -> float:
            prefetch([r])
            trials.append({"ratio": r, "drop": drops[r], "removed_units": plan_of(r).removed_units})
            return drops[r]

        # With an executor of w workers, the next levels of the bisection tree are measured at once
        # (speculatively); the path taken through them is the serial one, so the plan is the same.
        depth = max(1, int(math.log2(getattr(session.evaluator, "workers", 1) + 1)))

        def frontier(lo: float, hi: float, levels: int) -> list[float]:
            if levels <= 0:
                return []
            mid = (lo + hi) / 2
            return [mid, *frontier(lo, mid, levels - 1), *frontier(mid, hi, levels - 1)]

        speculate = session.evaluator is not None
        lo = 0.0
        if targets:
            fit = session.fit(model, scored, targets, self.allocation)
            lo, best = fit.ratio, fit.plan
            plans[lo] = best
        else:
            best = plan_of(0.0)
        hi = self.hi
        if speculate:
            prefetch(([lo] if targets else []) + [hi] + frontier(lo, hi, min(depth, self.iterations)))
        if targets and measure(lo) > max_drop:
            raise BudgetError(f"the budget and the guard cannot both hold: meeting the budget costs "
                              f"{trials[-1]['drop']:.2f} points (> max_drop {max_drop})")
        if measure(hi) <= max_drop:
            lo, best = hi, plan_of(hi)
        else:
            for step in range(self.iterations):
                mid = (lo + hi) / 2
                if speculate and mid not in drops:
                    prefetch(frontier(lo, hi, min(depth, self.iterations - step)))
                if measure(mid) <= max_drop:
                    lo, best = mid, plan_of(mid)
                else:
                    hi = mid
        best.meta.update({"strategy": "guarded", "max_drop": max_drop, "ratio": lo,
                          "measured_drop": next((t["drop"] for t in trials if t["ratio"] == lo), 0.0)})
        pruned = apply_plan(model, best)
        if lo in weights:
            pruned.load_state_dict(weights[lo])  # exactly the fine-tuned weights that passed the guard
        elif lo in drops:
            session.recalibrate_bn(pruned)  # the weights that were measured: the same calibration batches
        kept_finetune = self._recover_within_guard(session, pruned, base, max_drop)
        return Proposal(pruned, [best], {"ratio": lo, "trials": trials, "base_accuracy": base,
                                         "speculative_evaluations": len(drops) - len({t["ratio"] for t in trials}),
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
