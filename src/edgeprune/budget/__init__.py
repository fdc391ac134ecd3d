"""Budgets: what a prune must reach, how to price a plan cheaply, and the ratio that meets it.

* :class:`Budget` (``budget.py``) — the targets and the accuracy guard, parsed from one vocabulary
  (``terms.py``: ``macs=0.5``, ``size=4MB``, ``latency=8ms``, ``speedup=2x``, ``sparsity=0.9``);
* cost models and pricing on meta-device copies (``costs.py``);
* :func:`fit_ratio` — the least pruning whose plan meets every target (``fit.py``).

Example:
    >>> import torch, torchvision
    >>> from edgeprune.budget import Budget
    >>> b = Budget(macs=0.5)                       # half the MACs of the original
    >>> [t.name for t in b.targets(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))]
    ['macs']
"""
from edgeprune.budget.budget import Budget
from edgeprune.budget.costs import BytesCost, CostModel, MacsCost, ParamsCost, Target, plan_cost, price
from edgeprune.budget.fit import Fit, fit_ratio
from edgeprune.budget.terms import LATENCY_METRICS, BudgetSyntaxError, Term, parse_term, parse_terms
from edgeprune.errors import BudgetError
from edgeprune.graph.probe import meta_copy

__all__ = ["Budget", "BudgetError", "BudgetSyntaxError", "BytesCost", "CostModel", "Fit", "LATENCY_METRICS",
           "MacsCost", "ParamsCost", "Target", "Term", "fit_ratio", "meta_copy", "parse_term", "parse_terms",
           "plan_cost", "price"]
