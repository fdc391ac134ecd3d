"""Magnitude criteria: the Lp norm of the weights a unit owns, combined over the group's slots.

A group's slots include buffers (a BatchNorm's ``running_mean`` and ``running_var`` are sliced with
its channels). They are statistics of the data, not weights: a channel with a large running variance
and tiny weights contributes little, so buffers never enter a magnitude score.

Slots differ in size by orders of magnitude (a BatchNorm's one ``gamma`` per channel beside a
consumer's ``out x k x k`` slice per channel), so their norms are on different scales. With
``normalize="mean"`` each slot's per-unit norms are divided by their mean over the units before the
slots are combined: every slot then has one equal vote in the ranking, and no single large tensor
decides it alone. Torch-Pruning 1.6 (``GroupMagnitudeImportance``) instead sums ``|w|^p`` per slot
without the root, averages those over slots and divides the result by its mean over units: there the
largest slices weigh most (``normalize="none"`` with the root is the closer of our two forms).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import REDUCTIONS, ScoreContext, learnable_slots, slot_unit_sum
from edgeprune.graph.groups import Group

NORMALIZERS = ("mean", "none")


@dataclass(frozen=True)
class Magnitude:
    """Score = reduction over the learnable slots of ``(sum of |w|^p over the unit's slice) ** (1/p)``.

    ``slots="out"`` scores a unit by the weights that produce it only (the filter norm of Li et
    al. 2017); ``"all"`` also counts its norm's scale (``gamma``) and its consumers' weights (a group
    norm, as Torch-Pruning's). Buffers (running statistics) are never read, and biases only where a
    group has no other learnable slot (they shift a unit's output, they do not scale what it passes on).
    ``normalize="mean"`` divides each slot's per-unit norms by their mean before the reduction
    (see the module docstring); ``"none"`` combines them as they are.

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
    normalize: str = "mean"

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
        per_slot = []
        for slot in chosen or weights:
            norm = slot_unit_sum(ctx, slot, group.size, self.p).pow(1.0 / self.p)  # (size,)
            if self.normalize == "mean":
                norm = norm / norm.mean().clamp_min(torch.finfo(norm.dtype).tiny)
            per_slot.append(norm)
        return REDUCTIONS[self.reduction](torch.stack(per_slot))


def _is_bias(tensor: str) -> bool:
    # Biases (a producer's, a norm's beta) shift a unit's output; their size says nothing about how much
    # of the input the unit passes on, and a conv bias before a BatchNorm is cancelled by it.
    return tensor.rpartition(".")[2] == "bias"
