"""BatchNorm scale: network slimming (Liu et al., "Learning Efficient Convolutional Networks
through Network Slimming", ICCV 2017).

A channel whose BatchNorm scale ``gamma`` is near zero passes (almost) only its bias on; Liu et
al. train with an L1 penalty on ``gamma`` and prune the channels with the smallest ``|gamma|``.
Without the penalty ``|gamma|`` is still a usable, free criterion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import ScoreContext, gather_units
from edgeprune.criteria.magnitude import Magnitude
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class BNScale:
    """Score = mean over the group's BatchNorm layers of ``|gamma|`` per unit.

    A BatchNorm is recognised by its ``running_var`` buffer beside the slot's ``weight``. A group
    with no BatchNorm (a Linear's neurons, say) is scored by ``fallback`` (L1 of the unit's
    weights), so the criterion works on every group; those scores are on another scale, which
    ``global`` ranking absorbs by normalising per group.

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
        >>> g = edgeprune.analyze(m, torch.randn(1, 3, 8, 8)).groups[0]
        >>> from edgeprune.criteria import ScoreContext
        >>> from edgeprune.surgery import named_tensors
        >>> BNScale()(g, ScoreContext(named_tensors(m))).tolist() == [1.0] * 8
        True
    """

    fallback: Magnitude = Magnitude(p=1)

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        per_slot = []
        for slot in group.slots:
            module, _, attr = slot.tensor.rpartition(".")
            if attr != "weight" or f"{module}.running_var" not in ctx.tensors:
                continue
            gamma = ctx.tensors[slot.tensor].detach().float().abs()  # (C,)
            per_slot.append(gather_units(gamma, slot, group.size))
        if not per_slot:
            return self.fallback(group, ctx)
        return torch.stack(per_slot).mean(0)
