"""``edgeprune report RUN_DIR``: (re)write a run's report.html from its metrics.json."""
from __future__ import annotations

from pathlib import Path

import typer

from edgeprune.cli import app
from edgeprune.cli._common import EXIT_CODES_HELP, exit_on_errors


@app.command("report", epilog=EXIT_CODES_HELP)
def report_command(
    run_dir: Path = typer.Argument(..., help="a complete run directory written by edgeprune prune"),
) -> None:
    """Write RUN_DIR/report.html again (e.g. after upgrading edgeprune) and print its path."""
    from edgeprune.report import write_report
    from edgeprune.run.rundir import require_complete

    with exit_on_errors():
        path = write_report(require_complete(run_dir))
    typer.echo(str(path))
