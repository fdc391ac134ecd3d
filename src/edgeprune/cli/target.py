"""``edgeprune target ...``: latency tables of target devices.

    edgeprune target build torchvision:resnet18 --input-shape 1,3,224,224 --threads 2 --out resnet18.json
    edgeprune target build torchvision:mobilenet_v2 --runtime litert --threads 2 --out mnv2-litert.json
    edgeprune target ops torchvision:resnet18 --input-shape 1,3,224,224 --out to-device/   # then, on the device:
        python to-device/lut_builder.py to-device/ops.json --threads 2 --out table.json
    edgeprune target ops torchvision:resnet18 --runtime litert --out to-device/           # ai-edge-litert + numpy:
        python to-device/lut_builder.py to-device/ops.json --runtime litert --threads 2 --out table.json
    edgeprune target script > lut_builder.py                  # the device-side builder alone
    edgeprune target show resnet18.json                       # target, staircases, calibration
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeprune.cli import app

target_app = typer.Typer(help="Latency tables of target devices (ONNX Runtime, LiteRT, OpenVINO, ExecuTorch), "
                              "built here or on the device.",
                         no_args_is_help=True)
app.add_typer(target_app, name="target")


def _model_and_input(model: str, input_shape: Optional[str]):
    from edgeprune.cli.profile import _parse_shape
    from edgeprune.specs import SpecError, default_input, load_model

    shape = _parse_shape(input_shape) if input_shape else None
    try:
        net = load_model(model).eval()
        return net, default_input(net, shape)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="MODEL") from exc


def _config(threads: int, runs: int, warmup: int, passes: int, levels: int, stat: str, no_spinning: bool,
            probe_threads: Optional[int], runtime: str = "onnxruntime", precision: str = "float32"):
    from edgeprune.runtimes import RuntimeMissingError, get_runtime
    from edgeprune.targets import TableConfig, lut_builder

    if stat not in ("median", "min", "p25"):
        raise typer.BadParameter(f"{stat!r}: use median, min or p25", param_hint="--stat")
    if runtime not in lut_builder.RUNTIMES:
        raise typer.BadParameter(f"{runtime!r}: use one of {', '.join(lut_builder.RUNTIMES)}", param_hint="--runtime")
    try:
        get_runtime(runtime).require()
    except RuntimeMissingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--runtime") from exc
    from edgeprune.targets import TableError

    try:
        return TableConfig(runtime=runtime, threads=threads, runs=runs, warmup=warmup, passes=passes, levels=levels,
                           stat=stat, spinning=not no_spinning, probe_threads=probe_threads, precision=precision)
    except TableError as exc:
        raise typer.BadParameter(str(exc), param_hint="--precision") from exc


RUNTIME_HELP = "the runtime the table is timed on: onnxruntime, litert, openvino or executorch (host only)"


@target_app.command("build")
def build_command(
    model: str = typer.Argument(..., help="torchvision:NAME, timm:NAME, package.module:factory, file.py:factory "
                                          "or a built-in task model"),
    out: Path = typer.Option(..., "--out", help="where to write the table (JSON)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="deployed input shape, e.g. 1,3,224,224"),
    threads: int = typer.Option(2, "--threads", min=1, help="the runtime's worker threads on the target"),
    runtime: str = typer.Option("onnxruntime", "--runtime", help=RUNTIME_HELP),
    runs: int = typer.Option(15, "--runs", min=1, help="timed runs per point"),
    warmup: int = typer.Option(3, "--warmup", min=0, help="untimed runs per point"),
    passes: int = typer.Option(1, "--passes", min=1, help="time the table this many times, keep each point's "
                                                          "smallest figure (2-3 on a shared machine)"),
    levels: int = typer.Option(8, "--levels", min=2, help="timed kept counts per group"),
    stat: str = typer.Option("median", "--stat", help="median, min or p25 of each point's runs"),
    no_spinning: bool = typer.Option(False, "--no-spinning", help="idle ONNX Runtime threads block (shared machine)"),
    probe_threads: Optional[int] = typer.Option(None, "--probe-threads", min=1,
                                                help="threads of the staircase sweeps (1 on a shared machine)"),
    precision: str = typer.Option("float32", "--precision",
                                  help="the kernels timed: float32, or int8 for a model deployed as INT8"),
) -> None:
    """Build MODEL's latency table on this machine (the target) and calibrate it on whole models."""
    from edgeprune.targets import LatencyPredictor, build_table

    net, example = _model_and_input(model, input_shape)
    config = _config(threads, runs, warmup, passes, levels, stat, no_spinning, probe_threads, runtime, precision)
    table = build_table(net, example, config, log=lambda msg: typer.echo(msg, err=True))
    table.save(out)
    cal = LatencyPredictor(table).calibration
    typer.echo(f"wrote {out}: {len(table.layers)} layers, {len(table.groups)} groups, target {table.target['key']}; "
               f"calibration scale {cal.scale:.3f} offset {cal.offset_ms:.3f} ms "
               f"(fit errors {', '.join(f'{e:+.1%}' for e in cal.errors())})")


@target_app.command("ops")
def ops_command(
    model: str = typer.Argument(..., help="the model, as for 'build'"),
    out: Path = typer.Option(..., "--out", help="folder for ops.json, the calibration models and lut_builder.py"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="deployed input shape"),
    levels: int = typer.Option(8, "--levels", min=2, help="timed kept counts per group"),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="the device's runtime: onnxruntime, litert or openvino"),
    precision: str = typer.Option("float32", "--precision",
                                  help="float32, or int8: int8 points, INT8 calibration models"),
) -> None:
    """Write what a device needs to build MODEL's table itself (numpy and its runtime only)."""
    from edgeprune.targets import TableError, write_ops

    net, example = _model_and_input(model, input_shape)
    config = _config(2, 15, 3, 1, levels, "median", False, None, runtime, precision)
    try:
        path = write_ops(net, example, out, config)
    except TableError as exc:
        raise typer.BadParameter(str(exc), param_hint="--runtime") from exc
    flag = f" --runtime {runtime}" if runtime != "onnxruntime" else ""
    typer.echo(f"wrote {path.parent}/ (ops.json, calibration models, lut_builder.py and its back end); on the device run:\n"
               f"  python lut_builder.py ops.json{flag} --threads 2 --out table.json")


@target_app.command("script")
def script_command() -> None:
    """Print the standalone device-side builder (save it as lut_builder.py)."""
    from edgeprune.targets import lut_builder

    typer.echo(Path(lut_builder.__file__).read_text(), nl=False)


@target_app.command("show")
def show_command(table_path: Path = typer.Argument(..., help="a latency table (JSON)")) -> None:
    """Summarise a table: target, fast steps per op family and group, calibration."""
    from edgeprune.targets import LatencyPredictor, LatencyTable, TableError

    try:
        table = LatencyTable.load(table_path)
    except TableError as exc:
        raise typer.BadParameter(str(exc), param_hint="TABLE_PATH") from exc
    typer.echo(f"target   {table.target['key']}  (isa {', '.join(table.target.get('isa', []))})")
    typer.echo(f"model    {table.model_key}: {len(table.layers)} timed layers")
    for family, axes in table.staircase.items():
        typer.echo(f"stairs   {family}: " + ", ".join(f"{a} step {e['step']} (off-step x{e['penalty']:.2f})"
                                                     for a, e in axes.items()))
    for name, g in table.groups.items():
        typer.echo(f"group    {name}: {g.size} units, fast step {g.step}, timed at {g.levels}")
    p = LatencyPredictor(table)
    typer.echo(f"predict  unpruned {p.dense_ms():.3f} ms; calibration scale {p.calibration.scale:.3f} "
               f"offset {p.calibration.offset_ms:.3f} ms on {len(p.calibration.points)} measured models")
