"""``edgeprune analyze MODEL [--data DATA]``: what can be pruned, in which coupled groups, and what not.

Lists every prunable group (its units, what is coupled in it) and every group left whole with
the reason. With the sensitivity scan of the strategies (when present) and ``--data``, it also
draws how the score falls as each group is pruned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, parse_shape, print_json, stderr_console


@app.command("analyze", epilog=EXIT_CODES_HELP)
def analyze_command(
    model: str = typer.Argument(..., help="built-in task, torchvision:NAME, timm:NAME, package.module:factory "
                                          "or path/to/file.py:factory"),
    data: Optional[str] = typer.Option(None, "--data", help="data spec (gives the example input, and the "
                                       "sensitivity scan's score when available)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="example input shape, e.g. 1,3,224,224"),
    seed: int = typer.Option(0, "--seed", help="which pretrained weights of a built-in task"),
    criterion: str = typer.Option("l2", "--criterion", help="unit scores the sensitivity scan prunes by"),
    sensitivity: bool = typer.Option(True, "--sensitivity/--no-sensitivity", help="with --data, scan each "
                                     "group's accuracy as it is pruned alone (one evaluation per point)"),
    executor: str = typer.Option("serial", "--executor", help="where the scan's evaluations run: serial, ray, auto "
                                 "or ray://HOST:PORT (each one a Ray task; pip install 'edgeprune[ray]')"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads of each Ray task (default 1; each "
                                          "reserves as many CPUs)"),
    as_json: bool = typer.Option(False, "--json", help="print the analysis as JSON"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the analysis JSON to this file"),
) -> None:
    """Show a model's prunable groups (sizes, coupled layers) and the groups left whole, with reasons."""
    with exit_on_errors(as_json):
        shape = parse_shape(input_shape) if input_shape else None
        result = analyze_model(model, data, input_shape=shape, seed=seed, criterion=criterion,
                               sensitivity=sensitivity, executor=executor, threads=threads)
    if out is not None:
        import json

        out.write_text(json.dumps(result, indent=1) + "\n")
    if as_json:
        print_json(result)
    else:
        _show(result)


def analyze_model(model_spec: str, data_spec: str | None = None, *, input_shape: tuple[int, ...] | None = None,
                  seed: int = 0, criterion: str = "l2", sensitivity: bool = True, executor: str = "serial",
                  threads: int | None = None) -> dict[str, Any]:
    """The analysis of a model as plain data: groups, skipped groups with reasons, and totals.

    With data (and ``sensitivity``), each group is also pruned alone at several ratios on a copy
    and evaluated (``edgeprune.strategies.sensitivity.scan``); with ``executor`` (``ray``, ``auto``,
    ``ray://HOST:PORT``) each evaluation is a task there, at ``threads`` threads, with the same curves.

    Returns:
        ``{"model", "input_shape", "groups": [{"name", "size", "unit", "partitions", "modules"}],
        "skipped": {name: reason}, "prunable_units", "blocks", "sensitivity"}``; ``blocks`` names the
        residual blocks ``--kind blocks`` can drop; ``sensitivity`` is
        ``{"metric", "base", "curves": {group: [[ratio, score], ...]}}`` or ``None``.
    """
    from edgeprune.graph.blocks import residual_blocks
    from edgeprune.graph import analyze
    from edgeprune.run.inputs import resolve_inputs

    inputs = resolve_inputs(model_spec, data_spec, seed=seed, input_shape=input_shape)
    analysis = analyze(inputs.model, inputs.example)
    groups = [{"name": g.name, "size": g.size, "unit": g.unit, "partitions": g.partitions,
               "modules": list(g.modules)} for g in analysis.groups]
    return {"model": model_spec, "input_shape": list(inputs.example.shape), "groups": groups,
            "skipped": {str(k): str(v) for k, v in analysis.skipped.items()},
            "prunable_units": sum(g["size"] for g in groups), "probe_rounds": analysis.probe_rounds,
            "blocks": residual_blocks(inputs.model, inputs.example),
            "sensitivity": _scan(inputs, criterion, seed, data_spec, input_shape, executor, threads)
            if sensitivity and inputs.evaluate is not None else None}


def _scan(inputs: Any, criterion: str, seed: int, data_spec: str | None, input_shape: tuple[int, ...] | None,
          executor: str, threads: int | None) -> dict[str, Any] | None:
    from edgeprune.criteria import get_criterion
    from edgeprune.run.search import sensitivity_for_report
    from edgeprune.scale import Evaluator, get_executor
    from edgeprune.strategies.sensitivity import scan
    from edgeprune.strategies.session import Session

    with get_executor(executor, threads=threads) as workers:
        evaluator = None if executor == "serial" else Evaluator(
            workers, data_spec, seed=seed, input_shape=input_shape,
            on_done=lambda name, score, k, n: stderr_console().print(f"{workers.name}: {k}/{n} {name}: {score:.2f}"))
        session = Session(inputs.example, get_criterion(criterion), criterion, seed=seed, data=inputs.train,
                          evaluate=inputs.evaluate, evaluator=evaluator)
        return sensitivity_for_report(scan(session, inputs.model, session.score(inputs.model)).to_dict())


def _show(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result['model']}: {len(result['groups'])} prunable groups, "
                        f"{result['prunable_units']} units (input {result['input_shape']})")
    for name, justify in (("group", "left"), ("units", "right"), ("unit size", "right"), ("partitions", "right"),
                          ("coupled layers", "left")):
        table.add_column(name, justify=justify)
    for g in result["groups"]:
        names = [m or "(top level)" for m in g["modules"]]  # top-level tensors: cls_token, pos_embed
        mods = ", ".join(names[:4]) + (f" (+{len(names) - 4})" if len(names) > 4 else "")
        table.add_row(g["name"], str(g["size"]), str(g["unit"]), str(g["partitions"]), mods)
    console.print(table)
    blocks = result.get("blocks") or []
    console.print(f"residual blocks that --kind blocks can drop: {len(blocks)}"
                  + (f" ({', '.join(blocks[:6])}{', ...' if len(blocks) > 6 else ''})" if blocks else
                     " (none: a block must return x + f(x) with nothing after the add)"))
    if result["skipped"]:
        skipped = Table(title="left whole")
        skipped.add_column("group")
        skipped.add_column("reason")
        for name, reason in result["skipped"].items():
            skipped.add_row(name, reason)
        console.print(skipped)
    curves = (result["sensitivity"] or {}).get("curves")
    if curves:
        ratios = [r for r, _ in next(iter(curves.values()))]
        sens = Table(title=f"sensitivity: accuracy (%) with one group pruned (base {result['sensitivity']['base']:.2f})")
        sens.add_column("group")
        for r in ratios:
            sens.add_column(f"{r:.0%}", justify="right")
        for name, points in curves.items():
            sens.add_row(name, *(f"{acc:.1f}" for _, acc in points))
        console.print(sens)
    else:
        console.print("[dim]sensitivity curves: give --data to scan them[/]")
