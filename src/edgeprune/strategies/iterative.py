"""Iterative (gradual) structured pruning: prune a bit, fine-tune, re-analyze, repeat.

The amount removed after step ``k`` of ``n`` follows a schedule (``edgeprune.schedule``:
Zhu & Gupta's cubic, or linear): with a cost budget, step ``k`` must bring each target's cost to
``original - s_k * (original - limit)``; with a ratio, to ``1 - s_k * ratio`` of each group's units.
Each step analyzes the model as it is now (already smaller), scores it afresh, fits the
allocation ratio on the meta device, cuts, and fine-tunes its share of the fine-tuning budget
(with distillation from the unpruned model if ``Finetune.distill`` is set). The plans compose: the
pruned model remembers them in order (``edgeprune.plan.plans_of``), and replaying them one after
another on a fresh copy gives the same architecture.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn as nn

from edgeprune.budget import Target
from edgeprune.schedule import SCHEDULES, step_amounts
from edgeprune.strategies.session import ALLOCATIONS, Session
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan


@dataclass(frozen=True)
class Iterative:
    """Prune over ``steps`` steps along ``schedule``, fine-tuning between steps.

    The fine-tuning budget (``Finetune.epochs``) is split evenly over the steps, so an iterative
    prune costs the same number of optimizer steps as a one-shot prune with the same ``Finetune``.
    Costs: ``steps`` analyses and scorings, ``steps x ~16`` plans priced, and the fine-tuning.

    Attributes:
        steps: pruning steps (``n``).
        schedule: ``"cubic"`` or ``"linear"``.
        allocation: ``"global"`` or ``"uniform"`` within each step.
        one_cosine: the steps' fine-tuning continues one cosine learning-rate decay over the whole
            budget (as a training loop with ``GradualPruner`` would), instead of each step decaying
            from ``Finetune.lr`` again.
    """

    steps: int = 3
    schedule: str = "cubic"
    allocation: str = "global"
    one_cosine: bool = False
    name: str = "iterative"

    def propose(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        if self.steps < 1 or self.schedule not in SCHEDULES or self.allocation not in ALLOCATIONS:
            raise ValueError(f"Iterative needs steps >= 1, schedule in {SCHEDULES}, allocation in {sorted(ALLOCATIONS)}")
        amounts = step_amounts(self.steps, 1.0, self.schedule)
        total_steps = 0
        if session.finetune is not None:
            total_steps = session.finetune.epochs * session.finetune.steps_per_epoch
        history, plans, kept_before, first = [], [], 1.0, None
        for k, s in enumerate(amounts):
            scored = session.score(model)
            first = first or scored
            if targets:
                goal = [replace(t, limit=t.original - s * (t.original - t.limit)) for t in targets]
                fit = session.fit(model, scored, goal, self.allocation)
                plan, used = fit.plan, fit.ratio
            else:
                kept_after = 1.0 - s * float(ratio or 0.0)  # of the original units
                used = 1.0 - kept_after / kept_before
                plan, kept_before = session.plan_at(scored, used, self.allocation), kept_after
            plan.meta.update({"strategy": "iterative", "step": k + 1, "of": self.steps, "schedule": self.schedule,
                              "scheduled": s})
            model = apply_plan(model, plan)  # a new copy each step: the caller's model is never changed
            plans.append(plan)
            share = total_steps // self.steps + (total_steps % self.steps if k == self.steps - 1 else 0)
            window = (k * (total_steps // self.steps), total_steps) if self.one_cosine else None
            session.recover(model, max_steps=share, lr_window=window)
            history.append({"step": k + 1, "scheduled": s, "ratio": used, "removed_units": plan.removed_units})
        return Proposal(model, plans, {"steps": history, **first.summary()}, recovered=True,
                        skipped=first.analysis.skipped)
