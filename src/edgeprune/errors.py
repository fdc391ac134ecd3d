"""Errors a user can act on. Each names the cause: the op, the module, the field or the file."""
from edgeprune.graph.probe import ProbeError
from edgeprune.plan import PlanError


class EdgepruneError(Exception):
    """Base of edgeprune's own errors."""


class UnsupportedModelError(EdgepruneError):
    """Nothing in the model can be pruned the way it was asked; the message says why."""


__all__ = ["EdgepruneError", "PlanError", "ProbeError", "UnsupportedModelError"]
