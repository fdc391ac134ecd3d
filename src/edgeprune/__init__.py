"""edgeprune: prune trained PyTorch models so they fit and run fast on edge devices.

The public API is this short list; everything else lives in subpackages named after the
pipeline (graph, criteria, strategies, surgery, measure, export, report).
"""
from edgeprune.api import apply_plan, prune
from edgeprune.errors import EdgepruneError, PlanError, ProbeError, UnsupportedModelError
from edgeprune.graph import analyze
from edgeprune.plan import Plan
from edgeprune.result import PruneResult

__version__ = "0.1.0"

__all__ = ["EdgepruneError", "Plan", "PlanError", "ProbeError", "PruneResult", "UnsupportedModelError",
           "analyze", "apply_plan", "prune"]
