"""``edgeprune demo``: the whole pipeline on the built-in MNIST CNN, in a few minutes on two cores.

Trains the ``mnist`` task's CNN once (cached afterwards), prunes it to about half the measured
latency within one point of accuracy, fine-tunes, exports and reports into ``runs/demo``.
"""
from __future__ import annotations

from pathlib import Path

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, print_json

# The demo asks for half the MACs (global allocation, channel counts rounded to multiples of 16,
# which ONNX Runtime's convolution kernels handle well): on 2 x86 cores this measured about 2x lower
# ONNX Runtime latency within a point of accuracy. speedup=2x (edgeprune.latency_aware) is wired,
# but on this CNN its allocation cut far past 2x in development (9x measured, 2.3 points lost);
# switch DEMO_TARGET to "speedup=2x" once it lands closer to its target.
DEMO_TARGET = "macs=0.5"
DEMO_NOTE = ("demo: the target is macs=0.5 (global strategy, --round-to 16), not speedup=2x: during development "
             "the latency-aware allocation cut this CNN far past 2x (9x measured, 2.3 points lost), while half "
             "the MACs measured about 2x lower ONNX Runtime latency on 2 x86 cores. The speed-up above is what "
             "this run measured.")
DEMO_RECIPE = {"model": "mnist", "data": "mnist", "target": [DEMO_TARGET], "max_drop": 1.0, "kind": "channels",
               "strategy": "global", "criterion": "l2", "round_to": 16, "epochs": 3, "lr": 2e-3, "seed": 0,
               "threads": 2, "latency_runs": 200}


@app.command("demo", epilog=EXIT_CODES_HELP)
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="run directory (a previous demo run there "
                             "is replaced)"),
    epochs: int = typer.Option(DEMO_RECIPE["epochs"], "--epochs", help="fine-tuning epochs"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON summary on stdout"),
) -> None:
    """Train (or reuse) the MNIST CNN, prune it to ~2x lower latency within 1 point, export, report."""
    from edgeprune.cli.prune import run_with_progress, show_outcome
    from edgeprune.run.recipe import recipe_from_mapping

    with exit_on_errors(as_json):
        recipe = recipe_from_mapping({**DEMO_RECIPE, "epochs": epochs, "out": str(out)}, source="demo")
        outcome = run_with_progress(recipe, force=True, notes=[DEMO_NOTE])
    if as_json:
        print_json(outcome.summary)
    else:
        show_outcome(outcome)
        typer.echo(f"open {outcome.run_dir / 'report.html'} in a browser to read the report")
    raise typer.Exit(int(outcome.exit_code))
