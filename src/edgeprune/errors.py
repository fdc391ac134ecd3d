"""Errors a user can act on. Each names the cause: the op, the module, the field or the file.

This module imports nothing, so every other module can derive its errors from ``EdgepruneError``
without pulling in heavy dependencies; ``except edgeprune.EdgepruneError`` catches them all.
"""


class EdgepruneError(Exception):
    """Base of edgeprune's own errors."""


class UnsupportedModelError(EdgepruneError, ValueError):
    """Nothing in the model can be pruned the way it was asked; the message says why."""


class PlanError(EdgepruneError, ValueError):
    """A plan is malformed, or does not fit the model it is applied to."""


class ProbeError(EdgepruneError, RuntimeError):
    """The probe could not make the pruned copy agree with the predicted shapes."""


class BudgetError(EdgepruneError):
    """A budget cannot be met (or is malformed); the message names the target and what was reached."""
