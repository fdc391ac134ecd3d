"""``edgeprune transfer RUN_DIR --runtimes onnxruntime,litert,executorch,openvino``: does the plan's
gain carry over? The original and the pruned model on every listed runtime, interleaved per runtime,
each artifact checked against PyTorch; a table (or ``--json``), ``transfer.json`` and a section in
the run's report."""
from __future__ import annotations

from pathlib import Path

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors, print_json


@app.command("transfer", epilog=EXIT_CODES_HELP)
def transfer_command(
    run_dir: Path = typer.Argument(..., help="a complete run directory written by edgeprune prune"),
    runtimes: str = typer.Option("onnxruntime,litert,executorch,openvino", "--runtimes",
                                 help="comma-separated: onnxruntime, litert, executorch, openvino"),
    threads: int = typer.Option(2, "--threads", min=1, help="worker threads of every runtime"),
    rounds: int = typer.Option(10, "--rounds", min=1, help="interleaved rounds per runtime"),
    runs: int = typer.Option(5, "--runs", min=1, help="timed runs per model per round"),
    check_widths: int = typer.Option(3, "--check-widths", min=0,
                                     help="odd-width depthwise layers to time against width rounded to 8"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Measure the run's original and pruned model on several runtimes, with parity."""
    from edgeprune.run.transfer import transfer

    with exit_on_errors(as_json):
        result = transfer(run_dir, runtimes.split(","), threads=threads, rounds=rounds, runs=runs,
                          check_widths=check_widths)
    if as_json:
        print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']}: original vs pruned, interleaved per runtime, {threads} thread(s)")
    for col in ("runtime", "version", "threads", "precision", "original ms", "pruned ms", "speed-up", "parity (max rel)"):
        table.add_column(col, justify="left" if col in ("runtime", "version", "precision") else "right")
    for r in result["rows"]:
        parity = max(r["parity_max_rel"].values())
        table.add_row(r["runtime"], r["version"], str(r["threads"]), r["precision"], f"{r['original_ms']:.3f}",
                      f"{r['pruned_ms']:.3f}", f"{r['speedup']:.2f}x", f"{parity:.1e}")
    console = Console()
    console.print(table)
    for w in result["warnings"]:
        console.print(f"[yellow]warning[/]: {w}", highlight=False)
