"""The strategies benchmark's paired comparison against Torch-Pruning (its verdict rests on it)."""
from __future__ import annotations

import pytest

from benchmarks.strategies import paired_difference


def _run(method: str, seed: int, accuracy: float, keep: float = 0.25) -> dict:
    return {"task": "mnist", "keep": keep, "seed": seed, "method": method, "accuracy": accuracy}


def test_paired_difference_pairs_runs_by_seed_and_budget():
    rows = [_run("torch-pruning", 0, 98.0), _run("torch-pruning", 1, 97.0), _run("torch-pruning", 2, 99.0),
            _run("torch-pruning", 0, 50.0, keep=0.5),  # another budget: must not be paired
            _run("ours", 0, 98.5), _run("ours", 1, 97.0), _run("ours", 2, 98.0), _run("ours", 3, 10.0)]
    ours = [r for r in rows if r["method"] == "ours"]
    d = paired_difference(ours, rows)
    # seed 3 has no reference run: left out; differences +0.5, 0, -1.0
    assert d["seeds"] == 3 and (d["wins"], d["ties"], d["losses"]) == (1, 1, 1)
    assert d["mean"] == pytest.approx(-0.5 / 3)
    assert d["se"] == pytest.approx(0.7637626 / 3 ** 0.5, rel=1e-6)  # sd of (0.5, 0, -1) over sqrt(3)


def test_the_reference_is_not_compared_with_itself():
    rows = [_run("torch-pruning", 0, 98.0)]
    assert paired_difference(rows, rows) is None
    assert paired_difference([_run("ours", 5, 98.0)], rows) is None  # no common seed
