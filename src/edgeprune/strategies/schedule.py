"""Pruning schedules for iterative pruning: pure functions of the step, no state.

The cubic schedule is Zhu & Gupta's ("To prune, or not to prune", 2017, eq. 1): pruning happens
at steps ``t = t0, t0 + dt, ..., t0 + n dt`` and the amount pruned at step ``t`` is

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt)) ** 3

held constant between pruning steps. The formula itself is ``edgeprune.weights.cubic_sparsity``
(with ``end = t0 + n dt``); this module adds the pruning steps and the linear alternative.
"""
from __future__ import annotations

from edgeprune.weights.schedule import cubic_sparsity

SCHEDULES = ("cubic", "linear")


def scheduled_amount(step: int, final: float, *, start: int, every: int, n: int, initial: float = 0.0,
                     kind: str = "cubic") -> float:
    """The amount pruned at ``step`` (``s_t``; held between pruning steps).

    Args:
        step: the current step ``t``.
        final: ``s_f``, reached at ``t0 + n dt``.
        start: ``t0``, the first pruning step (before it the amount is ``initial``).
        every: ``dt``, steps between pruning steps (>= 1).
        n: number of pruning steps after ``t0`` (>= 1).
        initial: ``s_i``.
        kind: ``"cubic"`` (Zhu & Gupta) or ``"linear"`` (equal increments).

    Returns:
        ``s_t`` at the last pruning step at or before ``step``.

    Example:
        >>> [round(scheduled_amount(t, 0.8, start=0, every=10, n=4), 4) for t in (0, 9, 10, 20, 40, 99)]
        [0.0, 0.0, 0.4625, 0.7, 0.8, 0.8]
    """
    if every < 1 or n < 1:
        raise ValueError(f"need every >= 1 and n >= 1, got every={every}, n={n}")
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
    if step < start:
        return initial
    k = min(n, (step - start) // every)  # pruning steps taken so far
    if kind == "linear":
        return initial + (final - initial) * k / n
    return cubic_sparsity(start + k * every, final, start=start, end=start + n * every, initial=initial)


def step_amounts(n: int, final: float = 1.0, kind: str = "cubic", initial: float = 0.0) -> list[float]:
    """``s_t`` at the ``n`` pruning steps after ``t0`` (``dt = 1``): the targets of an ``n``-step prune.

    Example:
        >>> [round(s, 4) for s in step_amounts(3)]
        [0.7037, 0.963, 1.0]
    """
    return [scheduled_amount(k, final, start=0, every=1, n=n, initial=initial, kind=kind) for k in range(1, n + 1)]
