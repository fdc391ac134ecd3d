"""BatchNorm recalibration: re-estimate running statistics after a cut.

Removing channels changes what the next layers receive, so their BatchNorm running statistics no
longer match; a pruned network can look broken until they are re-estimated. A few forward passes
on training data fix that at no training cost ("adaptive BatchNorm", Li et al., "EagleEye: Fast
Sub-net Evaluation for Efficient Neural Network Pruning", ECCV 2020), which also makes the
accuracy of a candidate cut a much better predictor of its accuracy after fine-tuning.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from edgeprune.graph.trace import call_model


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any BatchNorm layer tracks running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Iterable, batches: int | None = 8) -> int:
    """Re-estimate every BatchNorm's running mean and variance on ``data``, in place.

    Statistics are the plain average over the batches (``momentum=None``); every other layer
    stays in eval mode (dropout off) and no weight changes. The model is left in eval mode.

    Args:
        model: the (pruned) model.
        data: yields ``(inputs, targets)`` or bare inputs.
        batches: how many batches to use (all when ``None``).

    Returns:
        The number of batches run (0 when the model has no BatchNorm).

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        >>> recalibrate_bn(m, [torch.randn(32, 4) * 3 + 1], batches=1)
        1
        >>> bool((m[1].running_mean.abs() > 0).any())
        True
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    run = 0
    try:
        for i, batch in enumerate(data):
            if batches is not None and i >= batches:
                break
            inputs = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
            call_model(model, inputs)
            run += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return run
