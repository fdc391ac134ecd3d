"""First-order Taylor importance (Molchanov et al., "Importance Estimation for Neural Network
Pruning", CVPR 2019).

Removing a unit zeroes every slice ``S`` of every tensor coupled to it. To first order the loss
changes by ``L(w - w_S) - L(w) ~= -sum_{s in S} g_s w_s`` (``g`` the gradient of the loss), so the
unit's importance is the size of that change, ``|sum_{s in S} g_s w_s|``. The per-weight form is
``|g w|`` (their eq. 3).

Here ``g`` is the gradient of the mean loss over all calibration batches, so the score is the
first-order change of *that* loss. Molchanov et al. instead square the change per minibatch and
average the squares over minibatches (eq. 8), which does not vanish at a minimum of the loss where
the mean gradient does: ``Taylor(average="squares")``, registered as ``"taylor-squared"``, keeps each
batch's gradients to compute it. Per weight their average is ``w^2 E[g_b^2]``, the ranking of the
``fisher`` criterion (``edgeprune.criteria.fisher``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import ScoreContext, is_learnable, require, slot_sum
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class Taylor:
    """Score = ``|sum over the unit's slices of g * w|`` (``mode="group"``) or ``sum |g * w|`` (``"element"``).

    ``g`` is ``ctx.grads``: the gradient of the mean loss over the batches that
    ``edgeprune.criteria.data.collect_gradients`` ran. With ``average="squares"`` the score is
    instead the mean over those batches of ``(sum g_b * w)^2``, ``g_b`` each batch's gradient
    (Molchanov et al. 2019, eq. 8). Slices of buffers (BatchNorm running statistics) have no
    gradient and are left out.

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> from edgeprune.criteria.data import collect_gradients
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
        >>> g = edgeprune.analyze(m, data[0][0]).groups[0]
        >>> ctx = collect_gradients(m, data).context(m)
        >>> Taylor()(g, ctx).shape
        torch.Size([8])
    """

    mode: str = "group"
    average: str = "gradient"  # or "squares": the mean over batches of each batch's squared change

    def __post_init__(self) -> None:
        if self.mode not in ("group", "element") or self.average not in ("gradient", "squares"):
            raise ValueError(f"Taylor takes mode 'group' or 'element' and average 'gradient' or 'squares', "
                             f"got {self.mode!r}, {self.average!r}")

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"batch_grads"} if self.average == "squares" else {"grads"})

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        if self.average == "gradient":
            return self._change(group, ctx, ctx.grads).abs()
        if not ctx.batch_grads:
            raise KeyError("criterion 'taylor-squared' needs each batch's gradients; collect them first "
                           "(pass data= to edgeprune.prune, or see edgeprune.criteria.data)")
        return torch.stack([self._change(group, ctx, grads).pow(2) for grads in ctx.batch_grads]).mean(0)

    def _change(self, group: Group, ctx: ScoreContext, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_s g_s w_s`` per unit (of ``|g_s w_s|`` with ``mode="element"``), ``g`` from ``grads``."""
        total = torch.zeros(group.size)
        for slot in group.slots:
            if not is_learnable(ctx, slot.tensor):
                continue  # a buffer: nothing to differentiate
            g = require(grads, slot.tensor, "gradients", "taylor")
            w = ctx.tensors[slot.tensor].detach().float()
            prod = g.float() * w
            total = total + slot_sum(prod.abs() if self.mode == "element" else prod, slot, group.size)
        return total

    @staticmethod
    def weights(name: str, ctx: ScoreContext) -> torch.Tensor:
        """Per-weight Taylor scores ``|g * w|`` of one tensor (shape of the tensor), for weight pruning."""
        return (require(ctx.grads, name, "gradients", "taylor").float() * ctx.tensors[name].detach().float()).abs()

