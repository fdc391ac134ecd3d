"""Gradual weight pruning inside a training loop: masks tighten on a schedule and hold in between."""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from edgeprune.plan import Plan, attach_plan
from edgeprune.surgery.masks import masks_of, masks_to_entries, set_masks
from edgeprune.weights.allocation import compute_masks
from edgeprune.weights.config import WeightPruneConfig
from edgeprune.weights.config import plan_kind
from edgeprune.schedule import cubic_sparsity

__all__ = ["GradualWeightPruner"]


class GradualWeightPruner:
    """Raise a model's weight sparsity along the cubic schedule while it trains.

    Call :meth:`step` after each optimizer step. Every ``every`` steps between ``start`` and
    ``end`` it re-ranks the (masked) weights and masks more of them; in between, the masks hold
    (see ``edgeprune.surgery.masks``). The model is masked in place. Unstructured only: an N:M
    pattern has one sparsity, so a one-shot :func:`prune_weights` plus fine-tuning fits it.

    Args:
        model: the model being trained (masked in place).
        config: what to prune and how; ``config.sparsity`` is the final sparsity.
        start: the step the first masks are set.
        end: the step the final sparsity is reached.
        every: steps between mask updates.

    Example:
        >>> import torch, torch.nn as nn
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> pruner = GradualWeightPruner(model, WeightPruneConfig(0.5), start=0, end=4, every=1)
        >>> for _ in range(5):
        ...     _ = pruner.step()
        >>> pruner.sparsity_
        0.5
    """

    def __init__(self, model: nn.Module, config: WeightPruneConfig, *, start: int, end: int, every: int = 1) -> None:
        if config.nm is not None:
            raise ValueError("GradualWeightPruner is for unstructured sparsity; use prune_weights for N:M")
        if config.needs_gradients:
            raise ValueError(f"GradualWeightPruner ranks by magnitude; criterion {config.criterion!r} needs a data "
                             "pass: use prune_weights(..., data=) for it")
        if every < 1 or end <= start:
            raise ValueError("need every >= 1 and end > start")
        self.model, self.config, self.start, self.end, self.every = model, config, start, end, every
        self.step_ = 0
        self.sparsity_ = 0.0

    def target(self, step: int) -> float:
        """The scheduled sparsity at ``step``."""
        return cubic_sparsity(step, float(self.config.sparsity), start=self.start, end=self.end)

    def step(self) -> bool:
        """Advance one step; mask more weights when the schedule says so.

        Returns:
            Whether the masks changed on this step (the convention of ``edgeprune.GradualPruner.step``);
            the sparsity they now hold is :attr:`sparsity_`.
        """
        t = self.step_
        self.step_ += 1
        due = t >= self.start and ((t - self.start) % self.every == 0 or t >= self.end)
        goal = self.target(t)
        if due and goal > self.sparsity_:
            masks, _ = compute_masks(self.model, dataclasses.replace(self.config, sparsity=goal))
            set_masks(self.model, masks)
            self.sparsity_ = goal
            return True
        return False

    def plan(self, attach: bool = True) -> Plan:
        """The plan of the masks the model holds now.

        Args:
            attach: also record it on the model (``edgeprune.plan.attach_plan``).

        Returns:
            A plan of kind ``"weights"``.
        """
        masks = masks_of(self.model)
        plan = Plan(kind=plan_kind(self.config), masks=masks_to_entries(masks, self.config.pattern),
                    shapes={n: list(k.shape) for n, k in masks.items()},
                    meta={**self.config.to_meta(), "sparsity": self.sparsity_, "schedule": "cubic",
                          "start": self.start, "end": self.end, "every": self.every})
        if attach:
            attach_plan(self.model, plan)
        return plan
