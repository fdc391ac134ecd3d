"""What every criterion shares: reading a group's slices unit by unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from edgeprune.graph.groups import Group
from edgeprune.plan import Slot


@dataclass
class ScoreContext:
    """What a criterion may read: the model's tensors by name, and gradients or activations if collected."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    seed: int = 0
    _cache: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)

    def per_index(self, tensor: str, dim: int, p: float, row_groups: int = 1) -> torch.Tensor:
        """Sum of ``|w| ** p`` per index along ``dim`` (per global input channel when ``row_groups`` > 1).

        Cached: a layer that reads many groups (DenseNet's concatenations) is reduced once.
        """
        key = (tensor, dim, p, row_groups)
        if key not in self._cache:
            x = self.tensors[tensor].detach().float()
            if row_groups > 1:
                per_in = _power_sum(x.reshape(x.shape[0], x.shape[1], -1), p, dim=2)  # (out, in/groups)
                per_in = per_in.reshape(row_groups, -1, x.shape[1]).sum(1)  # (groups, in/groups)
                self._cache[key] = per_in.reshape(-1)  # index = group * (in/groups) + j
            else:
                self._cache[key] = _power_sum(x.movedim(dim, 0).reshape(x.shape[dim], -1), p, dim=1)
        return self._cache[key]


class Criterion(Protocol):
    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        """One score per unit of ``group`` (shape ``[group.size]``); higher means keep."""


def gather_units(per_index: torch.Tensor, slot: Slot, size: int) -> torch.Tensor:
    """Sum a per-index vector over the indices each unit of the slot covers (shape ``[size]``)."""
    if slot.row_groups > 1:
        return per_index
    o = torch.arange(slot.outer).view(-1, 1, 1) * slot.stride
    c = torch.arange(size).view(1, -1, 1) * slot.inner
    r = torch.arange(slot.inner).view(1, 1, -1)
    return per_index[slot.offset + o + c + r].sum((0, 2))


def slot_unit_sum(ctx: ScoreContext, slot: Slot, size: int, p: float = 1.0) -> torch.Tensor:
    """The sum of ``|w| ** p`` over everything each unit of the slot covers (shape ``[size]``)."""
    return gather_units(ctx.per_index(slot.tensor, slot.dim, p, slot.row_groups), slot, size)


def _power_sum(x: torch.Tensor, p: float, dim: int) -> torch.Tensor:
    return torch.linalg.vector_norm(x, ord=p, dim=dim).pow(p)


REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda s: s.mean(0),
    "sum": lambda s: s.sum(0),
    "max": lambda s: s.max(0).values,
    "prod": lambda s: s.prod(0),
}
