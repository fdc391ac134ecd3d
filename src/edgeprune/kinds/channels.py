"""Channels: conv channels, Linear neurons and attention heads, with everything coupled to them.

The strategies (``edgeprune.strategies``) choose how many units each group loses; criteria
(``edgeprune.criteria``) choose which. This kind wires them to the router.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from edgeprune.budget import Budget
from edgeprune.criteria import Criterion, get_criterion
from edgeprune.criteria.data import LossFn
from edgeprune.graph.analysis import Ignore
from edgeprune.graph.rules import RuleRegistry
from edgeprune.kinds.base import Resources
from edgeprune.result import Proposal
from edgeprune.strategies import PRESETS, Strategy
from edgeprune.strategies.session import Session
from edgeprune.targets.model import latency_model

DEFAULT_RATIO = 0.3
_NEED_NO_TARGET = ("uniform", "global", "iterative")  # these fall back to DEFAULT_RATIO without a target


@dataclass(frozen=True)
class Channels:
    """Structured pruning of channels, neurons and heads.

    Attributes:
        criterion: a name from ``edgeprune.criteria.CRITERIA`` or a callable ``(group, ScoreContext) -> scores``.
        strategy: a name from ``edgeprune.strategies.PRESETS`` or a strategy config (``OneShot``,
            ``Sensitivity``, ``Iterative``, ``Guarded``, ``LatencyAware``).
        ignore: modules whose outputs must keep every unit (names with globs, objects or types).
        round_to: keep channel counts at multiples of this where a group is large enough.
        rules: op rules extended for custom ops (``edgeprune.graph.default_rules().copy()``).
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for gradient criteria (cross-entropy by default).
        calibration_batches: batches of ``data`` that data-driven criteria read.
        head_dims: cut attention heads within (every head keeps fewer dims, the head count stays),
            as Torch-Pruning does by default, instead of removing whole heads; an attention that
            cannot be cut so keeps whole-head units, and ``skipped`` says why
            (``edgeprune.graph.headdims``).
    """

    criterion: str | Criterion = "l2"
    strategy: str | Strategy = "uniform"
    ignore: Ignore = ()
    round_to: int = 1
    rules: RuleRegistry | None = None
    loss_fn: LossFn | None = None
    calibration_batches: int | None = 8
    head_dims: bool = False

    @property
    def name(self) -> str:
        return "channels"

    def strategy_config(self) -> Strategy:
        """The strategy as a config object."""
        if isinstance(self.strategy, str):
            if self.strategy not in PRESETS:
                raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {sorted(PRESETS)}")
            return PRESETS[self.strategy]
        if not hasattr(self.strategy, "propose"):
            raise TypeError(f"strategy must be a name or a strategy config with .propose(), "
                            f"got {type(self.strategy).__name__}")
        return self.strategy

    def propose(self, model: nn.Module, example_inputs: Any, ratio: float | None, budget: Budget | None,
                resources: Resources) -> Proposal:
        if ratio is not None and budget is not None and budget.has_cost:
            raise ValueError("give either ratio= or a cost budget=, not both")
        strategy = self.strategy_config()
        if ratio is None and (budget is None or not budget.has_cost) and strategy.name in _NEED_NO_TARGET:
            ratio = DEFAULT_RATIO
        if ratio is not None and not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {ratio}")
        if budget is not None and budget.has_latency and budget.latency_model is None:
            budget = budget.with_latency_model(latency_model(model, example_inputs, budget.runtime, budget.threads,
                                                             budget.precision))
        finetune = resources.finetune
        teacher = copy.deepcopy(model).eval() if finetune is not None and finetune.distill is not None else None
        session = Session(example_inputs, get_criterion(self.criterion), criterion_name(self.criterion),
                          ignore=self.ignore, rules=self.rules, round_to=self.round_to, seed=resources.seed,
                          data=resources.data, loss_fn=self.loss_fn, calibration_batches=self.calibration_batches,
                          evaluate=resources.evaluate, finetune=finetune, teacher=teacher, evaluator=resources.evaluator,
                          max_drop=budget.max_drop if budget is not None else None, budget=budget,
                          head_dims=self.head_dims, reconstruct=resources.reconstruct,
                          original=model if resources.reconstruct is not None else None)
        targets = budget.targets(model, example_inputs) if budget is not None and budget.has_cost else []
        proposal = strategy.propose(session, model, targets, ratio)
        proposal.stats.update({"strategy": strategy.name, "criterion": session.criterion_name,
                               "groups": proposal.details.get("groups", 0), "skipped_groups": len(proposal.skipped),
                               "probe_rounds": proposal.details.get("probe_rounds", 0),
                               "unknown_ops": proposal.details.get("unknown_ops", {}), "cost": session.meter.as_dict()})
        if session.reconstructed:
            proposal.stats["reconstruct"] = session.reconstructed[-1]
        for t in targets:
            proposal.stats[f"budget_{t.name}"] = {"limit": t.limit, "original": t.original}
        return proposal


def criterion_name(criterion: str | Criterion) -> str:
    return criterion if isinstance(criterion, str) else repr(criterion)
