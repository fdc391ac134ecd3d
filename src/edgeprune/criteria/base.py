"""What every criterion shares: reading a group's slices unit by unit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from edgeprune.graph.groups import Group
from edgeprune.plan import Slot


@dataclass
class ScoreContext:
    """What a criterion may read: the model's tensors by name, and gradients or activations if collected.

    Attributes:
        tensors: parameters and buffers by ``state_dict`` name, the learnable ones as ``nn.Parameter``
            objects (what ``edgeprune.surgery.named_tensors`` returns): criteria tell weights from
            running statistics by that type.
        grads: mean gradient of the loss per parameter over the collected batches (same names).
        grad_sq: mean of the squared per-batch gradient per parameter (the empirical Fisher diagonal).
        activations: per-module output statistics, ``{module: {"mean": [C], "apoz": [C], "order": k}}``
            (see ``edgeprune.criteria.data.collect_activations``).
        batch_grads: each batch's gradient per parameter (kept only for criteria that need
            ``"batch_grads"``: memory is batches x parameters).
        seed: for random choices.
    """

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    seed: int = 0
    grad_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    batch_grads: list[dict[str, torch.Tensor]] = field(default_factory=list)
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
    """``criterion(group, ctx) -> scores``. A criterion that needs data declares it in ``needs``
    (a subset of ``{"grads", "grad_sq", "batch_grads", "activations"}``); magnitude criteria need nothing."""

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


def is_learnable(ctx: ScoreContext, name: str) -> bool:
    """Whether ``name`` is a learnable parameter (a weight, bias or norm affine), not a buffer such as
    BatchNorm's ``running_mean``/``running_var``."""
    return isinstance(ctx.tensors.get(name), torch.nn.Parameter)


def learnable_slots(group: Group, ctx: ScoreContext) -> list[Slot]:
    """The group's slots that lie in learnable parameters (buffers left out)."""
    return [s for s in group.slots if is_learnable(ctx, s.tensor)]


def needs_of(criterion: Criterion) -> frozenset[str]:
    """What data a criterion reads besides the weights (empty for magnitude and random)."""
    return frozenset(getattr(criterion, "needs", frozenset()))


def _power_sum(x: torch.Tensor, p: float, dim: int) -> torch.Tensor:
    return torch.linalg.vector_norm(x, ord=p, dim=dim).pow(p)


REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda s: s.mean(0),
    "sum": lambda s: s.sum(0),
    "max": lambda s: s.max(0).values,
    "prod": lambda s: s.prod(0),
}


def index_sum(x: torch.Tensor, dim: int, row_groups: int = 1) -> torch.Tensor:
    """Signed sum of ``x`` per index along ``dim`` (per global input channel when ``row_groups`` > 1).

    The layout matches :meth:`ScoreContext.per_index`, so :func:`gather_units` maps the result to units.
    """
    x = x.detach().float()
    if row_groups > 1:
        per_in = x.reshape(x.shape[0], x.shape[1], -1).sum(2)  # (out, in/groups)
        return per_in.reshape(row_groups, -1, x.shape[1]).sum(1).reshape(-1)  # index = group * (in/groups) + j
    return x.movedim(dim, 0).reshape(x.shape[dim], -1).sum(1)


def slot_sum(values: torch.Tensor, slot: Slot, size: int) -> torch.Tensor:
    """Sum an elementwise quantity (shaped like the slot's tensor) over each unit's slice (shape ``[size]``)."""
    return gather_units(index_sum(values, slot.dim, slot.row_groups), slot, size)


def require(store: dict, name: str, what: str, criterion: str) -> torch.Tensor:
    """``store[name]``, or an error that tells the user how to collect it."""
    if name not in store:
        raise KeyError(f"criterion {criterion!r} needs {what} of {name!r}; collect them first "
                       f"(pass data= to edgeprune.prune, or see edgeprune.criteria.data)")
    return store[name]
