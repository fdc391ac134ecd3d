"""Uniform: the same fraction of units from every group (Li et al. 2017's one-shot setting)."""
from __future__ import annotations

import torch

from edgeprune.graph.groups import Group
from edgeprune.strategies.base import lowest, removable


def uniform(groups: list[Group], scores: dict[str, torch.Tensor], ratio: float,
            round_to: int = 1) -> dict[str, list[int]]:
    """Remove ``ratio`` of each group's units, lowest scores first.

    Returns:
        {group name: unit indices to remove}.
    """
    out = {}
    for g in groups:
        n = removable(g, int(g.size * ratio), round_to)
        out[g.name] = lowest(scores[g.name], n, g.partitions)
    return out
