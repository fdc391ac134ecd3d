"""Criteria: one score per unit of a group, no side effects. Registry by name."""
from __future__ import annotations

from edgeprune.criteria.base import Criterion, ScoreContext, gather_units, slot_unit_sum
from edgeprune.criteria.magnitude import Magnitude
from edgeprune.criteria.random import Random

CRITERIA: dict[str, Criterion] = {
    "l1": Magnitude(p=1),
    "l2": Magnitude(p=2),
    "l1-out": Magnitude(p=1, slots="out"),
    "l2-out": Magnitude(p=2, slots="out"),
    "random": Random(),
}


def get_criterion(criterion: str | Criterion) -> Criterion:
    """A criterion by name (``l1``, ``l2``, ``l1-out``, ``l2-out``, ``random``) or the callable itself."""
    if callable(criterion):
        return criterion
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {sorted(CRITERIA)} or pass a callable")
    return CRITERIA[criterion]


__all__ = ["CRITERIA", "Criterion", "Magnitude", "Random", "ScoreContext", "gather_units", "get_criterion", "slot_unit_sum"]
