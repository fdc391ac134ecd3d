"""Sparsity schedules: pure functions of the step, no state."""
from __future__ import annotations

__all__ = ["cubic_sparsity"]


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
