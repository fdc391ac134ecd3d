"""What pruning returns: a strategy's :class:`Proposal`, and the :class:`PruneResult` of ``edgeprune.prune``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from edgeprune.plan import Plan


@dataclass
class Proposal:
    """What a kind's strategy proposes: the plans, in order, and the model they made.

    A strategy never changes the model it is given: ``model`` is a new pruned copy (with the plans
    applied, and fine-tuned where the strategy recovers between steps).

    Attributes:
        model: the pruned copy.
        plans: every plan applied to make it, oldest first (one for a one-shot prune, one per step
            of an iterative one).
        details: what the strategy found (ratio, curves, trials, steps), JSON-ready.
        recovered: the strategy already fine-tuned ``model`` (iterative, guarded), so the caller must not.
        skipped: group -> why it was kept whole.
        stats: the kind's figures for ``PruneResult.stats`` (strategy, criterion, sparsity, blocks dropped).
    """

    model: nn.Module
    plans: list[Plan]
    details: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class PruneResult:
    """The pruned model, every plan that made it, and notes on what was left alone and why.

    Attributes:
        model: the pruned model.
        plans: the plans of this prune, oldest first; ``edgeprune.apply_plan(original, plans)`` replays them.
        skipped: group name -> the reason it was not pruned (a baked-in size, an op that
            edgeprune does not know, a protected output).
        stats: MACs and parameters before/after, accuracy, the strategy's details and its cost.
    """

    model: nn.Module
    plans: list[Plan] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        """The last plan (the only one, except for iterative prunes); an empty plan when nothing was cut."""
        return self.plans[-1] if self.plans else Plan(meta={"note": "nothing removed"})
