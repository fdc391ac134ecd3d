"""``edgeprune sweep RECIPE --grid strategy=uniform,global --grid seed=0,1 --out DIR [--executor ray]``:
the recipe run at every point of the grid, each point a task (``edgeprune.scale.sweep``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, print_json, stderr_console


@app.command("sweep", epilog=EXIT_CODES_HELP)
def sweep_command(
    recipe: Path = typer.Argument(..., help="a YAML/TOML/JSON recipe (the fields of edgeprune prune)"),
    grid: list[str] = typer.Option(..., "--grid", "-g", help="KEY=V1,V2: a recipe field and its values "
                                   "(repeatable; the sweep runs their product)"),
    out: Path = typer.Option(..., "--out", "-o", help="the sweep folder: one run directory per point, and sweep.json"),
    executor: str = typer.Option("serial", "--executor", help="serial, ray (a local cluster), auto or "
                                 "ray://HOST:PORT: each point one task"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (and CPUs) of each task (default 1)"),
    retries: int = typer.Option(1, "--retries", help="more attempts of a point that raised before it is reported"),
    force: bool = typer.Option(False, "--force", help="replace complete run directories of an earlier sweep"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
) -> None:
    """Run one recipe over a grid of strategies, seeds or any other fields."""
    from edgeprune.run.recipe import load_recipe
    from edgeprune.scale import get_executor
    from edgeprune.scale.sweep import run_sweep

    console = stderr_console()
    with exit_on_errors(as_json):
        base = load_recipe(recipe).to_dict()
        with get_executor(executor, threads=threads, retries=retries) as workers:
            rows = run_sweep(base, grid, out, executor=workers, force=force,
                             on_done=lambda name, row, k, n: console.print(f"{k}/{n} {name}: {row['status']}"))
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep of {recipe.name} ({len(rows)} points)")
    for name in ("point", "status", "accuracy before", "after", "MACs x", "speed-up"):
        table.add_column(name)
    for r in rows:
        table.add_row(",".join(f"{k}={v}" for k, v in r["point"].items()), str(r["status"]), _f(r.get("accuracy_before")),
                      _f(r.get("accuracy_after")), _f(r.get("macs_ratio"), 3), _f(r.get("speedup")))
    Console().print(table)
    console.print(f"rows: {out / 'sweep.json'}")


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
