"""edgeprune: prune trained PyTorch models so they fit and run fast on edge devices.

The public API is this short list; everything else lives in subpackages named after the
pipeline (graph, criteria, strategies, surgery, measure, export, weights, targets, report).
Measurement, export and weight pruning are imported on first use, so ``import edgeprune``
stays light.

Example:
    >>> import torch, torchvision, edgeprune as ep
    >>> result = ep.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), ratio=0.5)
    >>> result.model.fc.in_features
    256
"""
from importlib import import_module
from typing import Any

from edgeprune.api import apply_plan, prune, prune_blocks, prune_weights
from edgeprune.budget import Budget
from edgeprune.errors import BudgetError, EdgepruneError, PlanError, ProbeError, UnsupportedModelError
from edgeprune.graph import analyze
from edgeprune.plan import Plan
from edgeprune.pruner import Pruner
from edgeprune.recover import Distill, Finetune, GradualPruner
from edgeprune.result import PruneResult

__version__ = "0.1.0"

_LAZY = {
    "profile": "edgeprune.measure", "Profile": "edgeprune.measure", "compare": "edgeprune.measure",
    "export_onnx": "edgeprune.export.onnx", "export_sparse_onnx": "edgeprune.export.sparse_onnx",
    "save": "edgeprune.export.saving", "load": "edgeprune.export.saving", "load_model": "edgeprune.specs",
    "finalize": "edgeprune.surgery.masks",
    "verify_pruned": "edgeprune.verify",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")


__all__ = ["Budget", "BudgetError", "Distill", "EdgepruneError", "Finetune", "Plan", "PlanError", "ProbeError",
           "GradualPruner", "PruneResult", "Pruner", "UnsupportedModelError", "analyze", "apply_plan", "prune",
           "prune_blocks", "prune_weights", *_LAZY]
