"""The public entry of weight pruning: mask a model's weights, record the plan."""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch.nn as nn

from edgeprune.criteria.data import LossFn, collect_gradients
from edgeprune.plan import Plan, attach_plan
from edgeprune.result import PruneResult
from edgeprune.surgery.masks import masks_to_entries, set_masks
from edgeprune.weights.allocation import compute_masks
from edgeprune.weights.config import WeightPruneConfig
from edgeprune.weights.table import sparsity_totals

__all__ = ["prune_weights", "plan_kind"]

_NOTE = ("masked, not smaller: the model runs as fast as the dense one; call finalize() and export "
         "with export_sparse_onnx() for a smaller file")


def plan_kind(config: WeightPruneConfig) -> str:
    """The ``Plan.kind`` for a configuration: ``"weights"``, or the N:M pattern (``"2:4"``)."""
    return "weights" if config.nm is None else f"{config.nm[0]}:{config.nm[1]}"


def prune_weights(model: nn.Module, sparsity: float | None = None, *, pattern: str = "unstructured",
                  allocation: str = "global", criterion: str = "magnitude",
                  ignore: tuple[str | type[nn.Module], ...] = (), inplace: bool = False, seed: int = 0,
                  config: WeightPruneConfig | None = None, data: Iterable | None = None,
                  loss_fn: LossFn | None = None, batches: int | None = 8) -> PruneResult:
    """Mask the smallest weights of a model (unstructured or N:M sparsity).

    The returned model carries masks (reversible with ``edgeprune.surgery.masks.remove_masks``;
    bake them in with ``finalize``), so it can be fine-tuned with the zeros held. It is not faster:
    nothing here reports a speedup.

    Args:
        model: a trained model. It is copied unless ``inplace``.
        sparsity: fraction of the pruned tensors' values to zero; ``None`` for N:M (1 - N/M).
        pattern: ``"unstructured"``, ``"2:4"``, ``"4:8"`` or any ``"N:M"``.
        allocation: ``"global"``, ``"uniform"``, ``"lamp"`` or ``"random"`` (see
            :class:`WeightPruneConfig`).
        criterion: ``"magnitude"``, ``"taylor"`` (``|g w|``) or ``"fisher"`` (OBD, ``E[g^2] w^2 / 2``);
            the last two estimate how much the loss grows when a weight is zeroed, and need ``data``.
        ignore: module/tensor name globs or module types to leave dense.
        inplace: mask ``model`` itself instead of a copy.
        seed: random source for ``"random"``.
        config: a full :class:`WeightPruneConfig` (protection, include, layer types); when given,
            ``sparsity``, ``pattern``, ``allocation``, ``ignore`` and ``seed`` must be left at
            their defaults.
        data: batches of ``(inputs, targets)`` for the gradient criteria (training data, not the
            data you report accuracy on).
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for the gradients (cross-entropy by default).
        batches: how many batches of ``data`` to read (``None``: all).

    Returns:
        A :class:`PruneResult`: the masked model, its plan (kind ``"weights"`` or the N:M
        pattern, one :class:`MaskEntry` per masked tensor; also attached to the model),
        ``skipped`` (tensor -> why it stayed dense) and ``stats`` (sparsity and nonzero counts).

    Raises:
        ValueError: a bad sparsity, pattern, allocation or criterion, ``config`` given with other
            options, or a gradient criterion without ``data``.

    Example:
        >>> import torch.nn as nn
        >>> from edgeprune.weights import WeightPruneConfig, prune_weights
        >>> mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> r = prune_weights(mlp, config=WeightPruneConfig(0.75, protect_first=False))
        >>> round(r.stats["sparsity_pruned"], 2), r.plan.kind
        (0.75, 'weights')
    """
    if config is None:
        config = WeightPruneConfig(sparsity=sparsity, pattern=pattern, allocation=allocation,
                                   ignore=tuple(ignore), seed=seed, criterion=criterion)
    elif ((sparsity, pattern, allocation, criterion, tuple(ignore), seed)
          != (None, "unstructured", "global", "magnitude", (), 0)):
        raise ValueError("pass either config= or the separate options, not both")
    if config.needs_gradients and data is None:
        raise ValueError(f"criterion {config.criterion!r} ranks weights by the loss's gradients: pass data= "
                         "(batches of (inputs, targets) from the training set)")
    target = model if inplace else copy.deepcopy(model)
    gradients, collected = None, None
    if config.needs_gradients:
        collected = collect_gradients(target, data, loss_fn, batches)
        gradients = collected.context(target)
    masks, skipped = compute_masks(target, config, gradients)
    set_masks(target, masks)
    plan = Plan(kind=plan_kind(config),
                masks=masks_to_entries(masks, config.pattern),
                shapes={name: list(keep.shape) for name, keep in masks.items()},
                meta={**config.to_meta(), "skipped": dict(skipped)})
    attach_plan(target, plan)
    pruned = sum(k.numel() for k in masks.values())
    dropped = sum(int((~k).sum()) for k in masks.values())
    stats = {"sparsity_target": config.sparsity,
             "sparsity_pruned": dropped / pruned if pruned else 0.0,
             **sparsity_totals(target, config.layer_types, extra=tuple(masks)),
             "note": _NOTE}
    if collected is not None:
        stats["cost"] = {"forward": collected.forward, "backward": collected.backward,
                         "seconds": collected.seconds}
    return PruneResult(model=target, plan=plan, skipped=skipped, stats=stats)
