"""Strategy and seed sweeps: one recipe, a grid of overrides, each point a whole run as one task.

``--grid strategy=uniform,global --grid seed=0,1`` makes the four points of the product; each is the
recipe with those fields replaced, run by ``edgeprune.run.run_pipeline`` into ``OUT/<point>/`` on
whichever worker takes it (on a cluster, put ``OUT`` on a shared filesystem). A run that misses its
budget or guard is a result (its status and exit code are in the table); a task that raises is
retried and then reported by name. ``OUT/sweep.json`` holds one row per point, written beside and
renamed once every point is in.
"""
from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError

_SAFE = re.compile(r"[^A-Za-z0-9_.,=+-]+")


class SweepError(EdgepruneError):
    """A grid that names no field, repeats one, or gives it no value; or an output folder in the way."""


def parse_grid(grid: Sequence[str]) -> list[dict[str, str]]:
    """The points of ``["key=v1,v2", ...]``: the product of every key's values, in the order given.

    Raises:
        SweepError: an entry without ``=`` or values, or a key given twice.

    Example:
        >>> parse_grid(["strategy=uniform,global", "seed=0,1"])[1]
        {'strategy': 'uniform', 'seed': '1'}
    """
    axes: dict[str, list[str]] = {}
    for entry in grid:
        key, sep, values = entry.partition("=")
        key = key.strip().replace("-", "_")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals:
            raise SweepError(f"--grid {entry!r} is not KEY=VALUE[,VALUE...]")
        if key in axes:
            raise SweepError(f"--grid gives {key!r} twice; list its values once, comma-separated")
        axes[key] = vals
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else [{}]


def point_name(point: dict[str, str]) -> str:
    """A folder name for a point: ``strategy=global,seed=1`` (``base`` for the empty grid)."""
    return _SAFE.sub("_", ",".join(f"{k}={v}" for k, v in point.items())) or "base"


def run_sweep(base: dict[str, Any], grid: Sequence[str], out: str | os.PathLike, *, executor: Any = None,
              force: bool = False, on_done: Callable[[str, Any, int, int], None] | None = None) -> list[dict]:
    """Run the recipe ``base`` at every point of ``grid`` (see the module docstring).

    Args:
        base: the recipe as a mapping (a parsed recipe file, or ``RunRecipe.to_dict()``).
        grid: ``KEY=V1,V2`` entries; keys are recipe fields.
        out: the sweep folder; each point's run directory goes inside it.
        executor: an ``edgeprune.scale`` executor (``None``: serial, here).
        force: replace complete run directories a previous sweep left in ``out``.
        on_done: progress, as each point finishes.

    Returns:
        One row per point: ``{"point", "run_dir", "status", "exit_code", "accuracy_before",
        "accuracy_after", "macs_ratio", "params_ratio", "speedup", "error"}``.

    Raises:
        SweepError: a bad grid, or a field the recipe does not have (checked before any run).
        TaskFailed: a point raised something other than an edgeprune error, after its retries.
    """
    from edgeprune.run.recipe import recipe_from_mapping
    from edgeprune.scale.executor import SerialExecutor

    points = parse_grid(grid)
    out = Path(out)
    recipes = []
    for point in points:  # every point validated before the first run starts
        fields = {**base, **point, "out": str(out / point_name(point)), "executor": "serial"}
        recipes.append(recipe_from_mapping(fields, source=f"sweep point {point_name(point)}").to_dict())
    out.mkdir(parents=True, exist_ok=True)
    executor = executor or SerialExecutor()
    rows = executor.map(_run_point, {"force": force}, recipes, [point_name(p) for p in points], on_done)
    for row, point in zip(rows, points):
        row["point"] = point
    tmp = out / ".sweep.json.tmp"
    tmp.write_text(json.dumps({"base": base, "grid": list(grid), "rows": rows}, indent=1, default=str) + "\n")
    os.replace(tmp, out / "sweep.json")
    return rows


def _run_point(shared: dict, recipe: dict) -> dict:
    """One task: the whole pipeline of one point; an edgeprune error is this point's result, not a failure."""
    from edgeprune.run import run_pipeline
    from edgeprune.run.recipe import recipe_from_mapping

    row: dict[str, Any] = {"run_dir": recipe["out"], "error": None}
    try:
        outcome = run_pipeline(recipe_from_mapping(recipe), force=shared["force"])
    except EdgepruneError as exc:
        from edgeprune.cli._common import exit_code_of

        return {**row, "status": type(exc).__name__, "exit_code": exit_code_of(exc), "error": str(exc)}
    m = outcome.metrics
    return {**row, "status": m["status"], "exit_code": m["exit_code"],
            "accuracy_before": m["before"].get("accuracy"), "accuracy_after": m["after"].get("accuracy"),
            "macs_ratio": m["ratios"].get("macs"), "params_ratio": m["ratios"].get("params"),
            "speedup": m["ratios"].get("speedup")}
