"""Global: rank every unit of every group together, after normalising each group's scores."""
from __future__ import annotations

import torch

from edgeprune.graph.groups import Group
from edgeprune.strategies.base import lowest, removable


def global_ranking(groups: list[Group], scores: dict[str, torch.Tensor], ratio: float,
                   max_group_ratio: float = 0.9, round_to: int = 1) -> dict[str, list[int]]:
    """Remove ``ratio`` of all units where they score lowest across the model.

    Scores are divided by their group's mean so layers of different scale compete fairly; no
    group loses more than ``max_group_ratio`` of its units.

    Returns:
        {group name: unit indices to remove}.
    """
    entries = []
    for g in groups:
        s = scores[g.name].float()
        norm = s / (s.mean() + 1e-12)
        entries.extend((float(v), g.name) for v in norm)
    entries.sort()
    budget = int(sum(g.size for g in groups) * ratio)
    caps = {g.name: int(g.size * max_group_ratio) for g in groups}
    counts = dict.fromkeys(caps, 0)
    for _, name in entries:
        if budget <= 0:
            break
        if counts[name] < caps[name]:
            counts[name] += 1
            budget -= 1
    return {g.name: lowest(scores[g.name], removable(g, counts[g.name], round_to), g.partitions) for g in groups}
