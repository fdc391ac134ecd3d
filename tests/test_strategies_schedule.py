"""Schedules are pure functions of the step; the cubic one is Zhu & Gupta (2017), eq. 1, exactly."""
from __future__ import annotations

import pytest

from edgeprune.schedule import scheduled_amount, step_amounts


@pytest.mark.parametrize("s_i,s_f,t0,dt,n", [(0.0, 0.9, 0, 1, 10), (0.1, 0.75, 20, 7, 5), (0.0, 0.5, 3, 100, 3)])
def test_cubic_matches_the_published_formula_at_every_step(s_i, s_f, t0, dt, n):
    for t in range(0, t0 + (n + 2) * dt):
        got = scheduled_amount(t, s_f, start=t0, every=dt, n=n, initial=s_i)
        if t < t0:
            assert got == s_i
            continue
        t_k = t0 + min(n, (t - t0) // dt) * dt  # the last pruning step at or before t; the amount holds between
        published = s_f + (s_i - s_f) * (1 - (t_k - t0) / (n * dt)) ** 3
        assert got == pytest.approx(published, abs=1e-12)
        if (t - t0) % dt == 0 and t <= t0 + n * dt:  # at the pruning steps themselves, with t itself
            assert got == pytest.approx(s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3, abs=1e-12)


def test_linear_and_step_amounts():
    assert [scheduled_amount(t, 0.6, start=0, every=1, n=3, kind="linear") for t in range(5)] == pytest.approx(
        [0.0, 0.2, 0.4, 0.6, 0.6])
    amounts = step_amounts(4)
    assert amounts == sorted(amounts) and amounts[-1] == 1.0
    assert all(b - a <= a_prev - p for (p, a_prev), (a, b) in zip(zip([0.0] + amounts, amounts), zip(amounts, amounts[1:])))


def test_bad_schedules_fail_clearly():
    with pytest.raises(ValueError, match="every"):
        scheduled_amount(1, 0.5, start=0, every=0, n=3)
    with pytest.raises(ValueError, match="schedule"):
        scheduled_amount(1, 0.5, start=0, every=1, n=3, kind="exp")
