"""Diagonal Fisher / Optimal Brain Damage saliency (LeCun et al., "Optimal Brain Damage", NIPS 1989).

OBD: removing weight ``w_s`` at a minimum of the loss costs ``h_ss w_s^2 / 2`` to second order.
The Hessian diagonal ``h_ss`` is approximated by the empirical Fisher diagonal, the mean over
batches of the squared gradient ``E[g_s^2]`` (as in Theis et al. 2018, "Faster gaze prediction with
dense networks and Fisher pruning"). A unit's saliency is the sum over its slices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import ScoreContext, is_learnable, require, slot_sum
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class Fisher:
    """Score = ``sum over the unit's slices of E[g^2] * w^2 / 2``.

    ``E[g^2]`` is ``ctx.grad_sq``, filled by ``edgeprune.criteria.data.collect_gradients``
    (one squared gradient per batch, averaged). Buffers are left out.

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> from edgeprune.criteria.data import collect_gradients
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))] * 2
        >>> g = edgeprune.analyze(m, data[0][0]).groups[0]
        >>> Fisher()(g, collect_gradients(m, data).context(m)).shape
        torch.Size([8])
    """

    needs = frozenset({"grad_sq"})

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        total = torch.zeros(group.size)
        for slot in group.slots:
            if not is_learnable(ctx, slot.tensor):
                continue  # a buffer: no gradient
            total = total + slot_sum(self.weights(slot.tensor, ctx), slot, group.size)
        return total

    @staticmethod
    def weights(name: str, ctx: ScoreContext) -> torch.Tensor:
        """Per-weight OBD saliency ``E[g^2] * w^2 / 2`` of one tensor, for weight pruning."""
        g2 = require(ctx.grad_sq, name, "squared gradients", "fisher").float()
        return 0.5 * g2 * ctx.tensors[name].detach().float().pow(2)
