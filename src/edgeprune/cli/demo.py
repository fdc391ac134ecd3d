"""``edgeprune demo``: the whole pipeline on the built-in MNIST CNN, in a few minutes on two cores.

Trains the ``mnist`` task's CNN once (cached afterwards), prunes it to about half the measured
latency within one point of accuracy, fine-tunes, exports and reports into ``runs/demo``.
"""
from __future__ import annotations

from pathlib import Path

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, print_json

# The demo asks for MACs <= 0.35x with channel counts rounded to multiples of 16 (the counts
# ONNX Runtime's convolution kernels run fastest; the rounding lands at 0.27x), global allocation
# and 5 epochs of fine-tuning. On 2 quiet x86 cores (2026-11-25) that measured 2.5-2.8x lower ONNX
# Runtime latency at -0.7 to -0.9 points; macs=0.5 measured only 1.5x there. speedup=2x
# (the latency strategy) reached 2.4x but lost 1.4 points on this small CNN, so the demo keeps
# the MAC target and reports the speed-up it measures.
DEMO_TARGET = "macs=0.35"
DEMO_NOTE = ("demo: the target is macs=0.35 (global strategy, --round-to 16), not speedup=2x: on this small CNN the "
             "latency-aware allocation met 2x but lost 1.4 points in development, while this MAC target measured "
             "2.5-2.8x lower ONNX Runtime latency within a point on 2 quiet x86 cores. The speed-up above is what "
             "this run measured; sub-millisecond latencies vary from run to run.")
DEMO_RECIPE = {"model": "mnist", "data": "mnist", "target": [DEMO_TARGET], "max_drop": 1.0, "kind": "channels",
               "strategy": "global", "criterion": "l2", "round_to": 16, "epochs": 5, "lr": 2e-3, "seed": 0,
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
