"""``edgeprune stream RUN_DIR --data sensors``: the run's deployed artifact on the task's recorded
stream, window by window in time order: detections, per-window latency p50/p99 against the hop
(the real-time verdict), ``stream.json`` and a section in the run's report."""
from __future__ import annotations

from pathlib import Path

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, print_json


@app.command("stream", epilog=EXIT_CODES_HELP)
def stream_command(
    run_dir: Path = typer.Argument(..., help="a complete run directory written by edgeprune prune"),
    data: str = typer.Option("sensors", "--data", help="the task whose stream is replayed"),
    artifact: str = typer.Option(None, "--artifact", help="file in the run (default: model.int8.tflite, "
                                 "model.tflite, model.onnx, the first there)"),
    runtime: str = typer.Option(None, "--runtime", help="tflm (default for .tflite), litert, onnxruntime (.onnx)"),
    realtime: bool = typer.Option(False, "--realtime", help="pace the windows at the stream's real rate "
                                  "(default: as fast as possible; the verdict is p99 < hop either way)"),
    seconds: float = typer.Option(None, "--seconds", min=0.0, help="replay only the first SECONDS of the stream"),
    device_dir: Path = typer.Option(None, "--device-dir", help="also write stream.py, the artifact and "
                                    "stream.npz there, to run the same loop on a device"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Replay the task's stream through the run's deployed artifact and report detections and latency."""
    from edgeprune.run.stream import stream_run

    with exit_on_errors(as_json):
        result = stream_run(run_dir, data, artifact=artifact, runtime=runtime, realtime=realtime,
                            seconds=seconds, device_dir=device_dir)
    if as_json:
        print_json({k: v for k, v in result.items() if k not in ("scores", "flags", "starts", "labels")})
        return
    typer.echo(stream_summary(result))


def stream_summary(result: dict) -> str:
    """A few lines: what ran, the detections against the labelled events, the real-time verdict."""
    lat, m = result["latency_ms"], result["metrics"]
    simulated = " (SIMULATED stream)" if result.get("simulated") else ""
    lines = [f"{result['artifact']} on {result['runtime']}: {result['windows']} windows of {result['window_ms']:.0f} ms "
             f"every {result['hop_ms']:.0f} ms, {result['seconds']:.0f} s of {result['task']}{simulated}"
             f"{', paced at the real rate' if result['paced'] else ''}",
             f"detections: {len(result['detections'])} against {m['events']} labelled events: event recall "
             f"{100 * m['event_recall']:.1f}%, precision {100 * m['event_precision']:.1f}%, F1 "
             f"{100 * m['event_f1']:.1f}%, window AUC {_percent(m['auc'])}",
             f"latency per window: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, hop {result['hop_ms']:.0f} ms: "
             f"{'real time (p99 < hop)' if result['realtime'] else 'NOT real time (p99 >= hop)'}"]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    """A fraction as a percentage; "n/a" where it is undefined (AUC on a stretch with one class only)."""
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
