"""Errors of a run, each carrying the exit code the command line returns for it.

Exit codes (documented in the README and ``edgeprune prune --help``):

====  =====================================================================
0     the run finished and met its targets and accuracy guard
1     an unexpected error (a bug, or a failure edgeprune cannot name)
2     bad input: a model, data or evaluation spec, a recipe field, a target
3     the budget cannot be met, or the accuracy guard (``--max-drop``) failed
130   interrupted (Ctrl-C); no run directory was left behind
====  =====================================================================
"""
from __future__ import annotations

from enum import IntEnum

from edgeprune.errors import EdgepruneError


class ExitCode(IntEnum):
    """What ``edgeprune`` returns to the shell."""

    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    NOT_MET = 3
    INTERRUPTED = 130


class RunError(EdgepruneError):
    """A run stopped for a reason the user can act on; ``exit_code`` says which kind."""

    exit_code: ExitCode = ExitCode.ERROR


class BadInputError(RunError, ValueError):
    """A spec, recipe field, target or run directory is wrong; the message names it."""

    exit_code = ExitCode.BAD_INPUT


class BudgetNotMetError(RunError):
    """No plan the strategy can make meets the targets (e.g. ``macs=0.01`` on a small model)."""

    exit_code = ExitCode.NOT_MET
