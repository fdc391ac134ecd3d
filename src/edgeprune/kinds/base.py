"""What every kind of pruning shares: the user's resources, and the contract a kind implements.

A *kind* says what a unit is (channels and heads, residual blocks, single weights) and how to score
and choose them. Every kind is a typed config with one method::

    propose(model, example_inputs, ratio, budget, resources) -> Proposal

which never changes ``model``: it returns plans and the pruned copy they make. Everything after
that — recovery, the accuracy guard, the figures before and after — is the router's
(``edgeprune.prune``), the same for every kind.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch.nn as nn

from edgeprune.budget import Budget
from edgeprune.result import Proposal


@dataclass(frozen=True)
class Resources:
    """What the user lends a prune besides the model: data, an evaluation, recovery, a seed.

    Attributes:
        data: batches of ``(inputs, targets)`` for data-driven criteria, BatchNorm recalibration and scoring.
        evaluate: ``evaluate(model) -> accuracy`` in points (higher is better), for strategies that
            measure and for the guard.
        finetune: an ``edgeprune.recover.Finetune`` for recovery after the cut.
        reconstruct: an ``edgeprune.recover.Reconstruct``: refit the cut's Linear consumers first.
        seed: for random choices.
        evaluator: an ``edgeprune.scale.Evaluator`` that measures candidate plans on an executor's
            workers instead of here (``None``: here, one after another).
    """

    data: Iterable | None = None
    evaluate: Callable[[nn.Module], float] | None = None
    finetune: Any = None
    seed: int = 0
    evaluator: Any = None
    reconstruct: Any = None


class Kind(Protocol):
    """A kind of pruning (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def propose(self, model: nn.Module, example_inputs: Any, ratio: float | None, budget: Budget | None,
                resources: Resources) -> Proposal: ...


def option_names(config_type: type) -> list[str]:
    """The options a kind's config takes, by name (its dataclass fields)."""
    return [f.name for f in fields(config_type) if f.init]
