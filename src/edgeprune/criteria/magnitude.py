"""Magnitude criteria: the Lp norm of everything a unit owns, reduced over the group's slices."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import REDUCTIONS, ScoreContext, slot_unit_sum
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class Magnitude:
    """Score = reduction over slots of (sum of |w|^p over the unit's slice) ** (1/p).

    ``slots="out"`` scores a unit by the weights that produce it only (the filter norm of Li et
    al. 2017); ``"all"`` also counts its norm and consumer weights (Torch-Pruning's group norm).
    """

    p: int = 2
    reduction: str = "mean"
    slots: str = "all"

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        chosen = [s for s in group.slots if self.slots == "all" or s.role == "out"] or group.slots
        per_slot = []
        for slot in chosen:
            raw = slot_unit_sum(ctx, slot, group.size, self.p)
            per_slot.append(raw.pow(1.0 / self.p))
        return REDUCTIONS[self.reduction](torch.stack(per_slot))
