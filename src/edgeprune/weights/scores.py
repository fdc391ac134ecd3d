"""Per-weight importance scores: pure functions from a tensor to a tensor of its shape.

They score; they never mask. An allocation (``edgeprune.weights.allocation``) turns scores into
keep masks. Higher score = more important.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from edgeprune.criteria.fisher import Fisher
from edgeprune.criteria.taylor import Taylor

__all__ = ["GRADIENT_SCORES", "SCORES", "WEIGHT_CRITERIA", "lamp_scores", "magnitude_scores", "random_scores"]


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

# Scores from the loss's gradients: the per-weight forms of the channel criteria of the same names.
# "taylor" (|g w|, Molchanov et al. 2019) and "fisher" (OBD saliency E[g^2] w^2 / 2, LeCun et al. 1989)
# both estimate the loss change of zeroing a weight; they read a ScoreContext with gradients.
GRADIENT_SCORES = {"taylor": Taylor.weights, "fisher": Fisher.weights}

# What ranks the weights under a "global"/"uniform" allocation or an N:M pattern, and what it reads
# besides the weights ("lamp" and "random" are allocations that bring their own scores).
WEIGHT_CRITERIA: dict[str, str | None] = {"magnitude": None, **dict.fromkeys(GRADIENT_SCORES, "gradients")}
