"""Errors a user can act on. Each names the cause: the op, the module, the field or the file.

This module imports nothing, so every other module can derive its errors from ``EdgepruneError``
without pulling in heavy dependencies; ``except edgeprune.EdgepruneError`` catches them all.
"""


class EdgepruneError(Exception):
    """Base of edgeprune's own errors."""


class UnsupportedModelError(EdgepruneError, ValueError):
    """Nothing in the model can be pruned the way it was asked; the message says why."""


def __getattr__(name: str):
    # PlanError and ProbeError live beside the code that raises them; they are reachable here too.
    if name == "PlanError":
        from edgeprune.plan import PlanError
        return PlanError
    if name == "ProbeError":
        from edgeprune.graph.probe import ProbeError
        return ProbeError
    raise AttributeError(f"module 'edgeprune.errors' has no attribute {name!r}")
