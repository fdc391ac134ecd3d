"""Magnitude criteria: the Lp norm of the weights a unit owns, over every tensor coupled to it.

A group's slots include buffers (a BatchNorm's ``running_mean`` and ``running_var`` are sliced with
its channels). They are statistics of the data, not weights: a channel with a large running variance
and tiny weights contributes little, so buffers never enter a magnitude score. Biases (a producer's,
a norm's ``beta``) shift a unit's output rather than scale what it passes on, and a conv bias before
a BatchNorm is cancelled by it, so they count only where a group has nothing else.

How the slots combine: the default score is the Lp norm of *all* the unit's weights taken as one
vector, ``(mean over slots of sum |w|^p) ** (1/p)`` (the mean only rescales). A slot weighs what it
holds: a consumer's ``out x k x k`` slice counts more than a BatchNorm's single ``gamma``. This ranks
units exactly as Torch-Pruning 1.6's ``GroupMagnitudeImportance`` does (per slot the sum of ``|w|^p``,
no root; mean over slots; divided by the mean over units, which changes no ranking within a group).
``normalize="mean"`` instead divides each slot's per-unit norms by their mean over the units before
the reduction, so every slot has one equal vote. Measured over a zoo of trained models (``benchmarks/criteria.py``,
docs/benchmarks.md) the equal vote was worse, on a ViT by 2 points, so it is not the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import REDUCTIONS, ScoreContext, learnable_slots, slot_unit_sum
from edgeprune.graph.groups import Group

NORMALIZERS = ("none", "mean")


@dataclass(frozen=True)
class Magnitude:
    """Score = ``(reduction over weight slots of sum |w|^p over the unit's slice) ** (1/p)``.

    ``slots="out"`` scores a unit by the weights that produce it only (the filter norm of Li et
    al. 2017); ``"all"`` also counts its norm's scale (``gamma``) and its consumers' weights (the
    group norm). Buffers (running statistics) are never read, biases only where a group has no other
    learnable slot. With the default ``reduction="mean"`` and ``normalize="none"`` the score is the
    Lp norm of all the unit's weights (up to a constant); ``normalize="mean"`` divides each slot's
    per-unit norms by their mean over units and reduces those (see the module docstring).

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> from edgeprune.criteria import ScoreContext
        >>> from edgeprune.surgery import named_tensors
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> g = edgeprune.analyze(m, torch.randn(1, 3, 8, 8)).groups[0]
        >>> Magnitude()(g, ScoreContext(named_tensors(m))).shape
        torch.Size([4])
    """

    p: int = 2
    reduction: str = "mean"
    slots: str = "all"
    normalize: str = "none"

    def __post_init__(self) -> None:
        if self.slots not in ("all", "out") or self.normalize not in NORMALIZERS or self.reduction not in REDUCTIONS:
            raise ValueError(f"Magnitude takes slots 'all' or 'out', normalize one of {NORMALIZERS} and reduction "
                             f"one of {sorted(REDUCTIONS)}; got {self.slots!r}, {self.normalize!r}, {self.reduction!r}")

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        learnable = learnable_slots(group, ctx)
        if not learnable:  # only buffers move with these units: nothing learnable tells them apart
            return torch.zeros(group.size)
        weights = [s for s in learnable if not _is_bias(s.tensor)] or learnable
        chosen = [s for s in weights if s.role == "out"] if self.slots == "out" else weights
        power = torch.stack([slot_unit_sum(ctx, s, group.size, self.p) for s in chosen or weights])  # (slots, size)
        if self.normalize == "none":
            return REDUCTIONS[self.reduction](power).pow(1.0 / self.p)
        norm = power.pow(1.0 / self.p)  # each slot's Lp norm per unit, divided by its mean over units
        return REDUCTIONS[self.reduction](norm / norm.mean(1, keepdim=True).clamp_min(torch.finfo(norm.dtype).tiny))


def _is_bias(tensor: str) -> bool:
    return tensor.rpartition(".")[2] == "bias"
