"""Criteria: one score per unit of a group, no side effects. Registry by name.

Magnitude and random criteria read only the weights. ``taylor`` and ``fisher`` read gradients,
``activation``/``apoz`` read activation statistics: collect them with
``edgeprune.criteria.data.collect`` (``edgeprune.prune`` does it when given ``data=``).
"""
from __future__ import annotations

from edgeprune.criteria.activation import Activation
from edgeprune.criteria.base import (Criterion, ScoreContext, gather_units, is_learnable, learnable_slots, needs_of,
                                     slot_sum, slot_unit_sum)
from edgeprune.criteria.bn_scale import BNScale
from edgeprune.criteria.fisher import Fisher
from edgeprune.criteria.magnitude import Magnitude
from edgeprune.criteria.random import Random
from edgeprune.criteria.taylor import Taylor

CRITERIA: dict[str, Criterion] = {
    "l1": Magnitude(p=1),
    "l2": Magnitude(p=2),
    "l1-out": Magnitude(p=1, slots="out"),
    "l2-out": Magnitude(p=2, slots="out"),
    "random": Random(),
    "taylor": Taylor(),
    "taylor-squared": Taylor(average="squares"),
    "fisher": Fisher(),
    "bn": BNScale(),
    "activation": Activation("mean"),
    "apoz": Activation("apoz"),
}


def get_criterion(criterion: str | Criterion) -> Criterion:
    """A criterion by name (see ``CRITERIA``) or the callable itself."""
    if callable(criterion):
        return criterion
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)} or pass a callable")
    return CRITERIA[criterion]


__all__ = ["CRITERIA", "Activation", "BNScale", "Criterion", "Fisher", "Magnitude", "Random", "ScoreContext",
           "Taylor", "gather_units", "get_criterion", "is_learnable", "learnable_slots", "needs_of", "slot_sum",
           "slot_unit_sum"]
