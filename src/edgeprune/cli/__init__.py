"""The ``edgeprune`` command line: one module per command, registered on one Typer app."""
from __future__ import annotations

import typer

app = typer.Typer(help="Prune trained PyTorch models for edge devices, and measure what it bought.",
                  no_args_is_help=True, add_completion=False)


def _register_commands() -> None:
    # Each command module adds itself to `app`; importing them here keeps `import edgeprune` light.
    from edgeprune.cli import analyze, demo, export, profile, prune, report, stream, sweep, target, transfer  # noqa: F401


def main() -> None:
    _register_commands()
    app()
