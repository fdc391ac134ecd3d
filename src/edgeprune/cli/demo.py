"""``edgeprune demo``: the whole pipeline on built-in data, in a few minutes on two cores.

``--task mnist`` (the default): trains the ``mnist`` task's CNN once (cached afterwards), prunes it
to about half the measured latency within one point of accuracy, fine-tunes, exports and reports
into ``runs/demo``.

``--task sensors``: the microcontroller case study. Trains the bearing-fault detector once (cached),
prunes it peak-first to the ``cortex-m4`` profile (64 KiB arena, 256 KiB flash with the stated
runtime allowance) in INT8 within one point of event F1, verifies the ``.tflite`` in TFLite Micro
(arena, flash, the event F1 of the file itself), replays the (simulated) validation stream through
it window by window (``edgeprune stream``) and reports into ``runs/demo-sensors``.
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


# The microcontroller demo: the cortex-m4 profile sets ram= and flash=; the guard is the event F1 of the
# INT8 file run in TFLite Micro; --runtime tflm makes LiteRT's INT8 file the one artifact (no ORT INT8).
SENSORS_RECIPE = {"model": "sensors", "data": "sensors", "evaluate": "edgeprune.tasks.sensors:event_f1",
                  "device": "cortex-m4", "quantize": "int8", "runtime": "tflm", "max_drop": 1.0, "strategy": "sram",
                  "epochs": 2, "max_epochs": 4, "lr": 1e-3, "seed": 0, "threads": 2}
SENSORS_NOTE = ("demo --task sensors: the vibration stream is SIMULATED (seeded bearing faults; see "
                "edgeprune.tasks.sensors). TFLite Micro's latency here is its reference kernels on this host, not a "
                "microcontroller's.")
RECIPES = {"mnist": (DEMO_RECIPE, DEMO_NOTE, "runs/demo"), "sensors": (SENSORS_RECIPE, SENSORS_NOTE, "runs/demo-sensors")}


@app.command("demo", epilog=EXIT_CODES_HELP)
def demo_command(
    task: str = typer.Option("mnist", "--task", help="mnist (latency on ONNX Runtime) or sensors (a Cortex-M4 "
                             "budget in TFLite Micro, then the stream)"),
    out: Path = typer.Option(None, "--out", "-o", help="run directory (default runs/demo, runs/demo-sensors; a "
                             "previous demo run there is replaced)"),
    epochs: int = typer.Option(None, "--epochs", help="fine-tuning epochs (default 5 for mnist, 2 for sensors)"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON summary on stdout"),
) -> None:
    """Train (or reuse) a built-in model, prune it to its budget within 1 point, export, report."""
    from edgeprune.cli.prune import run_with_progress, show_outcome
    from edgeprune.run.recipe import recipe_from_mapping

    stream = None
    with exit_on_errors(as_json):
        if task not in RECIPES:
            from edgeprune.run.errors import BadInputError

            raise BadInputError(f"--task {task!r}: the demos are {', '.join(RECIPES)}")
        base, note, default_out = RECIPES[task]
        recipe = recipe_from_mapping({**base, "epochs": epochs or base["epochs"], "out": str(out or default_out)},
                                     source="demo")
        outcome = run_with_progress(recipe, force=True, notes=[note])
        if task == "sensors" and outcome.run_dir is not None and (outcome.run_dir / "model.int8.tflite").is_file():
            from edgeprune.run.stream import stream_run

            stream = stream_run(outcome.run_dir, "sensors")  # writes stream.json and re-renders the report
    if as_json:
        summary = dict(outcome.summary)
        if stream is not None:
            summary["stream"] = {k: v for k, v in stream.items() if k not in ("scores", "flags", "starts", "labels")}
        print_json(summary)
    else:
        show_outcome(outcome)
        if stream is not None:
            from edgeprune.cli.stream import stream_summary

            typer.echo(stream_summary(stream))
        typer.echo(f"open {outcome.run_dir / 'report.html'} in a browser to read the report")
    raise typer.Exit(int(outcome.exit_code))
