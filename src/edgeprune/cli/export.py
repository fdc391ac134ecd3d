"""``edgeprune export RUN_DIR --format onnx|tflite|pte|openvino``: the run's pruned model as a runtime's
file, checked against PyTorch before it is written (beside its final name, then renamed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors

FORMATS = ("onnx", "tflite", "pte", "openvino")


@app.command("export", epilog=EXIT_CODES_HELP)
def export_command(
    run_dir: Path = typer.Argument(..., help="a complete run directory written by edgeprune prune"),
    fmt: Optional[str] = typer.Option(None, "--format",
                                      help="onnx (default), tflite (LiteRT), pte (ExecuTorch), openvino (IR .xml+.bin)"),
    runtime: Optional[str] = typer.Option(None, "--runtime",
                                          help="the runtime whose format to write: onnxruntime|litert|executorch|openvino"),
    sparse: bool = typer.Option(False, "--sparse", help="store mostly-zero weights as sparse initializers (onnx)"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="make the batch dimension symbolic (onnx)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default: in RUN_DIR)"),
) -> None:
    """Export the run's saved pruned model; the file is checked against PyTorch on its runtime first."""
    with exit_on_errors():
        path = export_run(run_dir, fmt=fmt, runtime=runtime, sparse=sparse, dynamic_batch=dynamic_batch, out=out)
    typer.echo(str(path))


def export_run(run_dir: Path, *, fmt: str | None = None, runtime: str | None = None, sparse: bool = False,
               dynamic_batch: bool = False, out: Path | None = None) -> Path:
    """Reload a run's pruned model and export it; returns the file written.

    Args:
        run_dir: a complete run directory.
        fmt: ``onnx``, ``tflite``, ``pte`` or ``openvino`` (default: the runtime's, else ``onnx``).
        runtime: a runtime name instead of ``fmt``.
        sparse / dynamic_batch: ONNX options.
        out: the file (default ``RUN_DIR/model.<suffix>``).

    Raises:
        BadInputError: not a complete run, an unknown format, a format and runtime that disagree, or
            an ONNX-only option with another format.
        RuntimeMissingError: the runtime's extra is not installed (the message names the pip command).
    """
    from edgeprune.export.onnx import export_onnx
    from edgeprune.run.errors import BadInputError
    from edgeprune.run.reload import load_run_model
    from edgeprune.run.rundir import require_complete
    from edgeprune.runtimes import UnknownRuntimeError, get_runtime, runtime_for_format

    try:
        rt = get_runtime(runtime) if runtime else runtime_for_format(fmt or "onnx")
    except UnknownRuntimeError as exc:
        raise BadInputError(f"--format {fmt!r}: {exc}" if not runtime else str(exc)) from None
    if fmt is not None and fmt != rt.format:
        raise BadInputError(f"--format {fmt!r} is not the format of --runtime {rt.name} ({rt.format}); "
                            f"use one of {', '.join(FORMATS)}")
    if rt.name != "onnxruntime" and (sparse or dynamic_batch):
        raise BadInputError("--sparse and --dynamic-batch apply to --format onnx only")
    rt.require()
    run_dir = require_complete(run_dir)
    model, example = load_run_model(run_dir)
    if rt.name == "onnxruntime":
        path = out or run_dir / ("model.sparse.onnx" if sparse else "model.onnx")
        return export_onnx(model, example, path, sparse=sparse, dynamic_batch=dynamic_batch)
    options = {"onnx": run_dir / "model.onnx"} if rt.name == "openvino" and (run_dir / "model.onnx").exists() else {}
    return rt.export(model, example, out or rt.artifact_path(run_dir), **options)
