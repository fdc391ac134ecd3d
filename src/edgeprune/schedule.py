"""Pruning schedules: pure functions of the step, no state. The one place for every schedule
(iterative strategies, ``GradualPruner`` for channels, ``GradualWeightPruner`` for weights).

The cubic schedule is Zhu & Gupta's ("To prune, or not to prune", 2017, eq. 1): pruning happens
at steps ``t = t0, t0 + dt, ..., t0 + n dt`` and the amount pruned at step ``t`` is

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt)) ** 3

held constant between pruning steps. :func:`cubic_sparsity` is the formula itself (with
``end = t0 + n dt``); :func:`scheduled_amount` adds the pruning steps and the linear alternative.
"""
from __future__ import annotations

SCHEDULES = ("cubic", "linear")


def cubic_sparsity(step: int, final: float, *, start: int, end: int, initial: float = 0.0) -> float:
    """The gradual pruning schedule of Zhu & Gupta (2017).

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0)) ** 3`` for ``t_0 <= t <= t_1``:
    it prunes fast while many redundant weights remain and slowly near the end.

    Args:
        step: the current step ``t``.
        final: the sparsity reached at ``end``.
        start: ``t_0``; before it the sparsity is ``initial``.
        end: ``t_1`` (> ``start``); after it the sparsity is ``final``.
        initial: the sparsity at ``start``.

    Returns:
        The target sparsity at ``step``.

    Example:
        >>> cubic_sparsity(50, 0.9, start=0, end=100)
        0.7875
    """
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    if step <= start:
        return initial
    if step >= end:
        return final
    frac = (step - start) / (end - start)
    return final + (initial - final) * (1.0 - frac) ** 3


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
