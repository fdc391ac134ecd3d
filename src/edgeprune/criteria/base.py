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


class Criterion(Protocol):
    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        """One score per unit of ``group`` (shape ``[group.size]``); higher means keep."""


def slot_unit_sum(t: torch.Tensor, slot: Slot, size: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied elementwise to ``t``, summed over everything each unit of the slot covers."""
    x = fn(t.detach().float())
    if slot.row_groups > 1:
        per_in = x.reshape(x.shape[0], x.shape[1], -1).sum(2)  # (out, in/groups)
        per_in = per_in.reshape(slot.row_groups, -1, x.shape[1]).sum(1)  # (groups, in/groups)
        return per_in.reshape(-1)  # index = group * (in/groups) + j: the global input channel
    per_index = x.movedim(slot.dim, 0).reshape(x.shape[slot.dim], -1).sum(1)
    o = torch.arange(slot.outer).view(-1, 1, 1) * slot.stride
    c = torch.arange(size).view(1, -1, 1) * slot.inner
    r = torch.arange(slot.inner).view(1, 1, -1)
    return per_index[slot.offset + o + c + r].sum((0, 2))  # (size,)


REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda s: s.mean(0),
    "sum": lambda s: s.sum(0),
    "max": lambda s: s.max(0).values,
    "prod": lambda s: s.prod(0),
}
