"""Weights: unstructured and N:M sparsity as reversible masks (``edgeprune.weights`` scores and allocates).

A masked model is as fast as the dense one; the gain is a smaller file
(``edgeprune.export.sparse_onnx``) and, for 2:4 on hardware with sparse kernels, a runtime that can
use the pattern. Nothing here reports a speed-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from edgeprune.budget import Budget
from edgeprune.criteria.data import LossFn, collect_gradients
from edgeprune.kinds.base import Resources
from edgeprune.plan import Plan
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan
from edgeprune.surgery.masks import masks_to_entries
from edgeprune.weights.allocation import compute_masks
from edgeprune.weights.config import WeightPruneConfig, plan_kind, weight_criterion
from edgeprune.weights.table import sparsity_totals

DEFAULT_SPARSITY = 0.3
NOTE = ("masked, not smaller: the model runs as fast as the dense one; call finalize() and export "
        "with export_sparse_onnx() for a smaller file")


@dataclass(frozen=True)
class Weights:
    """Weight pruning (see :class:`edgeprune.weights.WeightPruneConfig` for every option).

    Attributes:
        pattern: ``"unstructured"`` or ``"N:M"`` (``"2:4"``: sparsity 1 - N/M in every group).
        allocation: ``"global"``, ``"uniform"``, ``"lamp"`` or ``"random"``.
        criterion: ``"magnitude"`` (``l1``/``l2`` mean the same), ``"taylor"`` or ``"fisher"`` (need ``data``).
        ignore: module/tensor name globs or module types to leave dense.
        config: a full ``WeightPruneConfig`` (protection, include, layer types); its sparsity is the amount.
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for the gradient criteria.
        calibration_batches: batches of ``data`` the gradient criteria read (``None``: all).
    """

    pattern: str = "unstructured"
    allocation: str = "global"
    criterion: str = "magnitude"
    ignore: tuple = ()
    config: WeightPruneConfig | None = None
    loss_fn: LossFn | None = None
    calibration_batches: int | None = 8

    @property
    def name(self) -> str:
        return "weights"

    def resolve(self, ratio: float | None, budget: Budget | None, seed: int) -> WeightPruneConfig:
        """The whole configuration, its sparsity from ``ratio`` or ``budget.sparsity``."""
        if budget is not None and budget.has_cost:
            raise ValueError("weight pruning takes a sparsity (ratio= or Budget(sparsity=...)), not a cost budget: "
                             "masked weights do not make a model smaller or faster")
        amount = budget.sparsity if budget is not None and budget.sparsity is not None else ratio
        if self.config is not None:
            if amount is not None and amount != self.config.sparsity:
                raise ValueError("pass either config= (with its sparsity) or a sparsity, not both")
            return self.config
        if amount is None and self.pattern == "unstructured":
            amount = DEFAULT_SPARSITY  # N:M fixes its own sparsity (1 - N/M)
        return WeightPruneConfig(sparsity=amount, pattern=self.pattern, allocation=self.allocation,
                                 ignore=tuple(self.ignore), seed=seed, criterion=weight_criterion(self.criterion))

    def propose(self, model: nn.Module, example_inputs: Any, ratio: float | None, budget: Budget | None,
                resources: Resources) -> Proposal:
        config = self.resolve(ratio, budget, resources.seed)
        if config.needs_gradients and resources.data is None:
            raise ValueError(f"criterion {config.criterion!r} ranks weights by the loss's gradients: pass data= "
                             "(batches of (inputs, targets) from the training set)")
        gradients, cost = None, {}
        if config.needs_gradients:
            collected = collect_gradients(model, resources.data, self.loss_fn, self.calibration_batches)
            gradients = collected.context(model)
            cost = {"forward": collected.forward, "backward": collected.backward, "seconds": collected.seconds}
        masks, skipped = compute_masks(model, config, gradients)
        plan = Plan(kind=plan_kind(config), masks=masks_to_entries(masks, config.pattern),
                    shapes={name: list(keep.shape) for name, keep in masks.items()},
                    meta={**config.to_meta(), "skipped": dict(skipped)})
        pruned = apply_plan(model, plan)
        total = sum(k.numel() for k in masks.values())
        dropped = sum(int((~k).sum()) for k in masks.values())
        stats = {"strategy": config.allocation, "criterion": config.criterion, "sparsity_target": config.sparsity,
                 "sparsity_pruned": dropped / total if total else 0.0,
                 **sparsity_totals(pruned, config.layer_types, extra=tuple(masks)), "note": NOTE}
        if cost:
            stats["cost"] = cost
        return Proposal(pruned, [plan], {}, skipped=dict(skipped), stats=stats)

