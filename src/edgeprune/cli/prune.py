"""``edgeprune prune MODEL --data DATA --target macs=0.5 --max-drop 1 --out RUN_DIR``: the whole way.

Profile the model, choose a plan that meets the targets, fine-tune, profile again, export a
checked ONNX file, save the pruned model and write the report, all into one run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, RichProgress, exit_on_errors, print_json

TARGET_HELP = ("what to reach, repeatable: macs=0.5 (fraction) or macs=120M, params=0.5, size=4MB, "
               "sparsity=0.9 (--kind weights), latency=8ms / speedup=2x (with hardware-aware pruning)")


@app.command("prune", epilog=EXIT_CODES_HELP)
def prune_command(
    model: Optional[str] = typer.Argument(None, help="built-in task (mnist, mnist1d, digits: its pretrained "
                                          "model), torchvision:NAME, timm:NAME, package.module:factory or "
                                          "path/to/file.py:factory"),
    data: Optional[str] = typer.Option(None, "--data", help="built-in task, image folder, or "
                                       "package.module:function returning (train_loader, val_loader)"),
    evaluate: Optional[str] = typer.Option(None, "--evaluate", help="package.module:function, f(model, loader) "
                                           "-> percent (default: top-1 accuracy)"),
    target: Optional[list[str]] = typer.Option(None, "--target", "-t", help=TARGET_HELP),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="accuracy points the run may lose (exit 3 beyond)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="the run directory to write"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="uniform, global, sensitivity, sensitivity-loss "
                                           "(scans the loss on --data), iterative or guarded (default uniform)"),
    kind: Optional[str] = typer.Option(None, "--kind", help="channels, blocks (whole residual blocks), weights or 2:4 (default channels)"),
    criterion: Optional[str] = typer.Option(None, "--criterion", help="l2, l1, taylor, fisher, bn, ... (default l2)"),
    reconstruct: Optional[int] = typer.Option(None, "--reconstruct", help="before fine-tuning, refit the Linear "
                                              "layers that read the cut by least squares on this many batches of "
                                              "--data (0: none, the default)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="fine-tuning epochs (default 1; 0: none)"),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", help="with --max-drop: keep fine-tuning, "
                                             "one epoch at a time, until the guard is met or this many epochs ran "
                                             "in all (default 10)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="fine-tuning learning rate (default 1e-3)"),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help="distil from the original model "
                                           "while fine-tuning"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of everything random (default 0)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="threads for latency measurement (default 2)"),
    round_to: Optional[int] = typer.Option(None, "--round-to", help="keep channel counts at multiples of this"),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="module name glob to keep whole (repeatable)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="batch size of loaders edgeprune builds"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="example input shape, e.g. 1,3,224,224"),
    latency_runs: Optional[int] = typer.Option(None, "--latency-runs", help="timed runs per latency figure (default 50)"),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="deploy on onnxruntime (default), litert, executorch, "
                                          "openvino or tflm: its artifact is written and the verdict measured on it"),
    device: Optional[str] = typer.Option(None, "--device", help="a microcontroller profile (cortex-m4, cortex-m7, "
                                         "cortex-m33, cortex-m0plus, esp32-s3): sets ram= and flash=, verified in "
                                         "TFLite Micro"),
    no_curve: bool = typer.Option(False, "--no-curve", help="do not evaluate search candidates (faster on big data)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: after fine-tuning, static INT8 for the "
                                           "runtime (model.int8.onnx, .tflite or .pte); the guard and size/latency "
                                           "targets judge that file"),
    calibration_batches: Optional[int] = typer.Option(None, "--calibration-batches", help="batches of training "
                                                      "data that calibrate INT8 (default 8, seeded by --seed)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="where the strategy's evaluations run: serial "
                                           "(default), ray (a local Ray cluster), auto (the running cluster) or "
                                           "ray://HOST:PORT; needs pip install 'edgeprune[ray]'"),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="fine-tune on this many processes of this node "
                                        "(torchrun, DistributedDataParallel; gloo on CPU, nccl on GPUs)"),
    nnodes: Optional[int] = typer.Option(None, "--nnodes", help="nodes of the distributed fine-tuning (run the same "
                                         "command on each)"),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT where the nodes meet "
                                                "(torchrun's rendezvous; with --nnodes > 1)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="a YAML/TOML recipe; flags override it"),
    force: bool = typer.Option(False, "--force", help="replace an existing complete run directory"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary (before/after) on stdout"),
) -> None:
    """Prune a trained model to a target, fine-tune it, export it and write a report."""
    given: dict[str, Any] = {
        "model": model, "data": data, "evaluate": evaluate, "target": target or None, "max_drop": max_drop,
        "out": str(out) if out else None, "strategy": strategy, "kind": kind, "criterion": criterion,
        "reconstruct": reconstruct, "epochs": epochs, "max_epochs": max_epochs, "lr": lr, "distill": distill, "seed": seed, "threads": threads, "round_to": round_to,
        "ignore": ignore or None, "batch_size": batch_size, "input_shape": input_shape,
        "latency_runs": latency_runs, "curve": False if no_curve else None, "quantize": quantize,
        "calibration_batches": calibration_batches, "runtime": runtime, "device": device, "executor": executor,
        "nproc": nproc,
        "nnodes": nnodes, "rdzv_endpoint": rdzv_endpoint,
    }
    given = {k: v for k, v in given.items() if v is not None}
    with exit_on_errors(as_json):
        recipe = build_recipe(given, config)
        outcome = run_with_progress(recipe, force=force)
    if as_json:
        print_json(outcome.summary)
    else:
        show_outcome(outcome)
    raise typer.Exit(int(outcome.exit_code))


def build_recipe(given: dict[str, Any], config: Path | None):
    """The recipe from a config file (if any) with the flags the user gave on top."""
    from edgeprune.run.recipe import load_recipe, recipe_from_mapping

    if config is not None:
        return load_recipe(config, overrides=given)
    return recipe_from_mapping(given, source="command line")


def run_with_progress(recipe, *, force: bool, notes: list[str] | None = None):
    """Run the pipeline with progress bars on stderr."""
    from edgeprune.run.pipeline import run_pipeline

    with RichProgress() as progress:
        return run_pipeline(recipe, force=force, progress=progress, notes=notes)


def show_outcome(outcome) -> None:
    """Print the before/after table, the checks and where the files are."""
    from rich.console import Console
    from rich.table import Table

    from edgeprune.report.render import ROWS, human

    m = outcome.metrics
    table = Table(title=f"{m['model']}: before / after")
    for name, justify in (("figure", "left"), ("before", "right"), ("after", "right"), ("after/before", "right")):
        table.add_column(name, justify=justify)
    for key, label, unit, _ in ROWS:
        b, a = m["before"].get(key), m["after"].get(key)
        if b is None and a is None:
            continue
        change = f"{a - b:+.2f} pt" if unit == "%" and b is not None and a is not None else (
            f"x{a / b:.3f}" if b and a is not None else "-")
        table.add_row(label, human(b, unit), human(a, unit), change)
    console = Console()
    console.print(table)
    if m.get("int8"):
        console.print(_int8_table(m))
    for c in m["targets"]:
        console.print(f"target {c['target']}: {'[green]met[/]' if c['met'] else '[red]missed[/]'}")
    if m["guard"]:
        g = m["guard"]
        verdict = "[green]passed[/]" if g["passed"] else "[red]failed[/]" if g["passed"] is False else "not checked"
        change = f"{-g['drop']:+.2f}" if g["drop"] is not None else "?"
        on = f" on {g['judged_on']}" if g.get("judged_on") else ""
        console.print(f"accuracy guard{on} (at most -{g['max_drop']:g} points): changed {change} points, {verdict}")
    for note in m["notes"]:
        console.print(f"[yellow]note[/]: {note}", highlight=False)
    console.print(f"run directory: {outcome.run_dir}  report: {outcome.run_dir / 'report.html'}")


def _int8_table(m):
    """Dense FP32 -> pruned FP32 -> pruned INT8, and dense INT8 (the quantize-only baseline)."""
    from rich.table import Table

    from edgeprune.report.render import human
    from edgeprune.run.int8 import STAGE_LABELS, STAGES

    stages = m["int8"]["stages"]
    table = Table(title="INT8 (ONNX Runtime; latency timed interleaved)")
    table.add_column("figure")
    for s in STAGES:
        table.add_column(STAGE_LABELS[s], justify="right")
    for key, label, unit in (("accuracy", "accuracy (INT8: the file run in ORT)", "%"), ("bytes", "file", "bytes"),
                             ("latency_ms", "latency (median)", "ms"), ("macs", "MACs", "")):
        table.add_row(label, *(human(stages[s][key], unit) for s in STAGES))
    return table
