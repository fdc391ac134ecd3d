"""Random scores: the baseline every criterion must beat."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import ScoreContext
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class Random:
    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + group.root)
        return torch.rand(group.size, generator=gen)
