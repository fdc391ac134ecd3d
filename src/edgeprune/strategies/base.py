"""Shared by every strategy: counting units to remove, picking the lowest scores, writing the plan."""
from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn as nn

from edgeprune.graph.groups import Group, make_plan  # noqa: F401  (strategies write plans with it)
from edgeprune.result import Proposal


def removable(group: Group, n_remove: int, round_to: int = 1) -> int:
    """The nearest count <= ``n_remove`` that keeps the group valid.

    Keeps at least one unit per partition, removes equal numbers per partition, and leaves a kept
    count that is a multiple of ``round_to`` where the group is large enough for it.
    """
    parts = group.partitions
    n = max(0, min(n_remove, group.size - parts))
    n -= n % parts
    if round_to > 1 and group.size >= round_to:
        step = parts * round_to // _gcd(parts, round_to)
        keep = group.size - n
        keep = max(step, -(-keep // step) * step)  # round the kept count up to the step
        n = max(0, group.size - keep)
        n -= n % parts
    return n


def lowest(scores: torch.Tensor, n_remove: int, partitions: int = 1) -> list[int]:
    """Indices of the ``n_remove`` lowest scores, equally many from each of ``partitions`` blocks."""
    if n_remove <= 0:
        return []
    size = scores.numel()
    block, per = size // partitions, n_remove // partitions
    picked = []
    for k in range(partitions):
        part = scores[k * block:(k + 1) * block]
        order = torch.argsort(part, stable=True)[:per]
        picked.extend(int(i) + k * block for i in order)
    return sorted(picked)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


class Strategy(Protocol):
    """A strategy config: ``propose(session, model, targets, ratio) -> Proposal``.

    It scores ``model`` through the session, chooses removals under the targets (or the ratio),
    and returns the plans with the pruned copy they make; ``model`` itself is never changed.
    """

    name: str

    def propose(self, session: Any, model: nn.Module, targets: list, ratio: float | None) -> Proposal: ...
