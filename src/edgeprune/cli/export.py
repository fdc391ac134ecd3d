"""``edgeprune export RUN_DIR --format onnx [--sparse]``: the run's pruned model as a checked ONNX file."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors

FORMATS = ("onnx",)


@app.command("export", epilog=EXIT_CODES_HELP)
def export_command(
    run_dir: Path = typer.Argument(..., help="a complete run directory written by edgeprune prune"),
    fmt: str = typer.Option("onnx", "--format", help="output format (onnx)"),
    sparse: bool = typer.Option(False, "--sparse", help="store mostly-zero weights as sparse initializers"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="make the batch dimension symbolic"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default: in RUN_DIR)"),
) -> None:
    """Export the run's saved pruned model; the file is checked against PyTorch in ONNX Runtime."""
    with exit_on_errors():
        path = export_run(run_dir, fmt=fmt, sparse=sparse, dynamic_batch=dynamic_batch, out=out)
    typer.echo(str(path))


def export_run(run_dir: Path, *, fmt: str = "onnx", sparse: bool = False, dynamic_batch: bool = False,
               out: Path | None = None) -> Path:
    """Reload a run's pruned model and export it; returns the file written.

    Raises:
        BadInputError: not a complete run, or an unknown format.
    """
    from edgeprune.export.onnx import export_onnx
    from edgeprune.run.errors import BadInputError
    from edgeprune.run.reload import load_run_model
    from edgeprune.run.rundir import require_complete

    if fmt not in FORMATS:
        raise BadInputError(f"--format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    run_dir = require_complete(run_dir)
    model, example = load_run_model(run_dir)
    path = out or run_dir / ("model.sparse.onnx" if sparse else "model.onnx")
    return export_onnx(model, example, path, sparse=sparse, dynamic_batch=dynamic_batch)
