"""What the commands share: exit codes, turning errors into messages, rich progress bars.

Every command prints results on stdout and progress and errors on stderr, so ``--json`` output
can be piped. Exit codes are those of :class:`edgeprune.run.errors.ExitCode`.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import typer

EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 unexpected error; 2 bad input (spec, recipe, target, run "
                   "directory); 3 budget not met or accuracy guard failed; 130 interrupted.")


def stderr_console():
    """A rich console on stderr (progress, errors), leaving stdout for results."""
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def exit_on_errors(as_json: bool = False) -> Iterator[None]:
    """Turn edgeprune's errors and Ctrl-C into a message on stderr and the documented exit code.

    Args:
        as_json: also print ``{"status": "error", ...}`` on stdout, for scripts.
    """
    from edgeprune.errors import EdgepruneError
    from edgeprune.export.saving import LoadError
    from edgeprune.plan import PlanError
    from edgeprune.run.errors import ExitCode
    from edgeprune.specs import SpecError

    code, message, kind = None, "", ""
    try:
        yield
    except KeyboardInterrupt:
        code, kind, message = ExitCode.INTERRUPTED, "interrupted", "interrupted; no run directory was left behind"
    except (EdgepruneError, SpecError, PlanError, LoadError) as exc:
        code, kind, message = exit_code_of(exc), type(exc).__name__, str(exc)
    if code is None:
        return
    from rich.markup import escape

    # escaped: a message may hold brackets rich would read as markup (pip install 'edgeprune[litert]')
    stderr_console().print(f"[bold red]error[/] ({kind}): {escape(message)}", highlight=False, markup=True)
    if as_json:
        typer.echo(json.dumps({"status": "error", "exit_code": int(code), "error": kind, "message": message}))
    raise typer.Exit(int(code))


def exit_code_of(exc: BaseException) -> int:
    """The exit code for one of edgeprune's errors: its own ``exit_code``, 3 for a budget that
    cannot be met, 2 for any other input the user can fix."""
    from edgeprune.run.errors import ExitCode

    if hasattr(exc, "exit_code"):
        return int(exc.exit_code)
    try:
        from edgeprune.budget import BudgetError
    except ImportError:  # budgets arrive with the strategies work; until then RunError covers it
        BudgetError = None  # noqa: N806
    if BudgetError is not None and isinstance(exc, BudgetError):
        return int(ExitCode.NOT_MET)
    return int(ExitCode.BAD_INPUT)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` (or ``1x3x224x224``) as a tuple of positive sizes.

    Raises:
        BadInputError: naming the text.
    """
    from edgeprune.run.errors import BadInputError

    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise BadInputError(f"--input-shape {text!r} is not a shape like 1,3,224,224") from None
    if not shape or min(shape) < 1:
        raise BadInputError(f"--input-shape {text!r} must be positive sizes like 1,3,224,224")
    return shape


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=1, default=str))


class RichProgress:
    """A :class:`edgeprune.run.progress.Progress` drawn as rich progress bars on stderr."""

    def __init__(self, console=None) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        self.console = console or stderr_console()
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(bar_width=16),
                             TimeElapsedColumn(),
                             TextColumn("{task.fields[note]}", table_column=Column(ratio=1, no_wrap=True,
                                                                                   overflow="ellipsis")),
                             console=self.console, expand=True,
                             transient=False)
        self.task = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def begin(self, step: str, total: float | None = None) -> None:
        self.task = self.bars.add_task(step, total=total, note="")

    def advance(self, amount: float = 1.0, note: str = "") -> None:
        if self.task is not None:
            self.bars.update(self.task, advance=amount, note=note)

    def end(self, step: str, seconds: float, note: str = "") -> None:
        if self.task is not None:
            task = self.bars.tasks[-1]
            self.bars.update(self.task, total=task.total or 1, completed=task.total or 1, note=note)
            self.task = None
