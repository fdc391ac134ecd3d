"""How a run tells the outside world where it is: a small listener interface.

The pipeline calls ``begin`` / ``advance`` / ``end`` around each step; the command line shows
them as rich progress bars, tests and the Python API use :class:`SilentProgress`.
"""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """A listener for a run's steps."""

    def begin(self, step: str, total: float | None = None) -> None:
        """A step starts; ``total`` units of work when known (epochs, candidates)."""

    def advance(self, amount: float = 1.0, note: str = "") -> None:
        """Some units of the current step are done; ``note`` is a short status (e.g. a loss)."""

    def end(self, step: str, seconds: float, note: str = "") -> None:
        """The step finished after ``seconds``; ``note`` summarises it."""


class SilentProgress:
    """A :class:`Progress` that ignores everything."""

    def begin(self, step: str, total: float | None = None) -> None:
        pass

    def advance(self, amount: float = 1.0, note: str = "") -> None:
        pass

    def end(self, step: str, seconds: float, note: str = "") -> None:
        pass
