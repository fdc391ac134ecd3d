"""Per-weight importance scores: pure functions from a tensor to a tensor of its shape.

They score; they never mask. An allocation (``edgeprune.weights.allocation``) turns scores into
keep masks. Higher score = more important.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["magnitude_scores", "lamp_scores", "random_scores", "SCORES"]


def magnitude_scores(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``|w|``.

    Args:
        weight: any tensor.
        generator: unused (the scores are deterministic).

    Returns:
        The absolute values, as float32.
    """
    return weight.detach().abs().float()


def lamp_scores(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Layer-adaptive magnitude-based pruning scores (Lee et al., ICLR 2021).

    With the layer's weights sorted by magnitude, ``w_1 <= ... <= w_n``, weight ``u`` scores
    ``w_u^2 / sum_{v >= u} w_v^2``: its squared magnitude over the squared magnitudes of the
    weights that survive it. Scores lie in (0, 1]; the largest weight of each layer scores 1, so a
    global threshold never empties a layer, and the scores of different layers are comparable
    (a global threshold on them bounds each layer's model-level distortion).

    Args:
        weight: one layer's tensor, any shape.
        generator: unused.

    Returns:
        The scores, float64 (sums of squares of large layers need the precision), shaped like ``weight``.
    """
    sq = weight.detach().double().reshape(-1) ** 2
    order = torch.argsort(sq, stable=True)
    sorted_sq = sq[order]
    # suffix sums: survivors[i] = sum_{j >= i} sorted_sq[j]
    survivors = sorted_sq.flip(0).cumsum(0).flip(0)
    sorted_scores = sorted_sq / survivors.clamp_min(torch.finfo(torch.float64).tiny)
    scores = torch.empty_like(sq)
    scores[order] = sorted_scores
    return scores.reshape(weight.shape)


def random_scores(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random scores: the random-pruning baseline.

    Args:
        weight: gives the shape.
        generator: the seeded random source.

    Returns:
        Uniform [0, 1) values shaped like ``weight``.
    """
    return torch.rand(weight.shape, generator=generator, dtype=torch.float32)


ScoreFn = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]
SCORES: dict[str, ScoreFn] = {"magnitude": magnitude_scores, "lamp": lamp_scores, "random": random_scores}
