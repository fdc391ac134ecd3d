"""``edgeprune profile MODEL``: parameters, MACs, bytes, latency and peak memory of one model."""
from __future__ import annotations

import json
from typing import Optional

import typer

from edgeprune.cli import app


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a shape like 1,3,224,224") from exc
    if not shape or any(d <= 0 for d in shape):
        raise typer.BadParameter(f"{text!r} is not a shape of positive sizes like 1,3,224,224")
    return shape


@app.command("profile")
def profile_command(
    model: str = typer.Argument(..., help="torchvision:NAME, timm:NAME, package.module:factory, "
                                          "path/to/file.py:factory or a built-in task model"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="input shape, e.g. 1,3,224,224"),
    threads: int = typer.Option(2, "--threads", min=1, help="intra-op threads (ONNX Runtime and PyTorch)"),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="batch size of the measured input"),
    runs: int = typer.Option(50, "--runs", min=1, help="timed runs per latency measurement"),
    warmup: int = typer.Option(10, "--warmup", min=0, help="untimed runs before them"),
    as_json: bool = typer.Option(False, "--json", help="print the profile as JSON"),
    no_latency: bool = typer.Option(False, "--no-latency", help="skip latency measurements"),
    no_memory: bool = typer.Option(False, "--no-memory", help="skip the peak memory measurement"),
    runtime: str = typer.Option("onnxruntime", "--runtime",
                                help="also time the artifact of this runtime: onnxruntime|litert|executorch|openvino"),
) -> None:
    """Measure a model: parameters, MACs, bytes (state dict, ONNX, zipped), latency, peak memory."""
    from rich.console import Console

    from edgeprune.cli._common import exit_on_errors
    from edgeprune.measure.profile import profile
    from edgeprune.measure.table import profile_table
    from edgeprune.runtimes import get_runtime
    from edgeprune.specs import SpecError, default_input, load_model

    with exit_on_errors():
        get_runtime(runtime).require()  # an unknown runtime or a missing extra, before any work

    shape = _parse_shape(input_shape) if input_shape else None
    try:
        net = load_model(model)
        example = default_input(net, shape)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="MODEL") from exc
    with exit_on_errors():
        result = profile(net, example, threads=threads, batch_size=batch_size, latency=not no_latency,
                         runs=runs, warmup=warmup, memory=not no_memory, name=model, runtime=runtime)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        Console().print(profile_table(result))
