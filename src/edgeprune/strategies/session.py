"""What every strategy works with: the model being pruned, how to score it, price it, evaluate
it and fine-tune it, and a meter of what that cost. Internal to ``edgeprune.prune``."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgeprune.budget import Fit, Target, fit_ratio, plan_cost
from edgeprune.criteria import Criterion, ScoreContext, needs_of
from edgeprune.criteria.data import LossFn, collect
from edgeprune.errors import UnsupportedModelError
from edgeprune.graph import analyze
from edgeprune.graph.analysis import Analysis, Ignore
from edgeprune.graph.rules import RuleRegistry
from edgeprune.plan import Plan
from edgeprune.strategies.base import make_plan
from edgeprune.strategies.global_ import global_ranking
from edgeprune.strategies.meter import Meter
from edgeprune.strategies.uniform import uniform
from edgeprune.surgery import named_tensors

ALLOCATIONS = {"uniform": uniform, "global": global_ranking}


@dataclass
class Scored:
    """One model's groups and their unit scores."""

    analysis: Analysis
    tensors: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]

    @property
    def groups(self):
        return self.analysis.groups

    def summary(self) -> dict:
        """What the analysis found, for a proposal's details."""
        return {"groups": len(self.groups), "probe_rounds": self.analysis.probe_rounds,
                "unknown_ops": dict(self.analysis.trace.unknown_ops)}


@dataclass
class Session:
    """The shared machinery of a prune (see ``edgeprune.prune`` for what each field means)."""

    example_inputs: Any
    criterion: Criterion
    criterion_name: str = "l2"
    ignore: Ignore = ()
    rules: RuleRegistry | None = None
    round_to: int = 1
    seed: int = 0
    data: Iterable | None = None
    loss_fn: LossFn | None = None
    calibration_batches: int | None = 8
    evaluate: Callable[[nn.Module], float] | None = None
    finetune: Any = None  # edgeprune.recover.Finetune
    max_drop: float | None = None
    budget: Any = None  # edgeprune.budget.Budget: the latency strategy reads its runtime and latency model
    recalibrate: bool = True  # re-estimate BatchNorm statistics on ``data`` after each cut
    teacher: nn.Module | None = None
    meter: Meter = field(default_factory=Meter)
    skipped: dict[str, str] = field(default_factory=dict)  # from the first analysis: group -> why it was kept
    evaluator: Any = None  # edgeprune.scale.Evaluator: measures candidate plans on an executor's workers
    head_dims: bool = False  # cut attention heads within (edgeprune.graph.headdims)
    reconstruct: Any = None  # edgeprune.recover.Reconstruct: refit the cut's Linear consumers to ``original``
    original: nn.Module | None = None  # the model before any cut (reconstruction's target)
    reconstructed: list = field(default_factory=list)  # each reconstruction's log (as a dict)
    _calibration: list | None = field(default=None, init=False, repr=False)

    def calibration(self) -> list:
        """The batches every candidate is recalibrated (and its loss measured) on: the first
        ``calibration_batches`` of ``data``, drawn once, so a candidate's score depends on its plan
        alone, not on how many candidates were measured before it (a shuffling loader draws a new
        order each pass) — which is what lets candidates be measured in any order, on any worker."""
        if self._calibration is None:
            if self.data is None:
                raise ValueError("no data= to recalibrate BatchNorm or measure the loss on")
            self._calibration = list(itertools.islice(iter(self.data), self.calibration_batches))
        return self._calibration

    def score(self, model: nn.Module) -> Scored:
        """Analyze ``model`` as it is now and score every group (collecting data if the criterion needs it)."""
        with self.meter.phase("analyze"):
            analysis = analyze(model, self.example_inputs, ignore=self.ignore, rules=self.rules,
                               head_dims=self.head_dims)
        if not self.skipped:
            self.skipped = dict(analysis.skipped)
        if not analysis.groups:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(analysis.skipped.items())[:5])
            raise UnsupportedModelError(f"no prunable group found in {type(model).__name__}"
                                        + (f" (e.g. {reasons})" if reasons else ""))
        tensors = named_tensors(model)
        ctx = ScoreContext(tensors, seed=self.seed)
        needs = needs_of(self.criterion)
        if needs:
            if self.data is None:
                raise ValueError(f"criterion {self.criterion_name!r} needs data ({', '.join(sorted(needs))}): "
                                 f"pass data= (batches of (inputs, targets))")
            with self.meter.phase("collect"):
                got = collect(model, self.data, frozenset(needs), self.loss_fn, self.calibration_batches)
            self.meter.forward += got.forward
            self.meter.backward += got.backward
            ctx = got.context(model, self.seed)
        with self.meter.phase("score"):
            scores = {g.name: self.criterion(g, ctx) for g in analysis.groups}
        return Scored(analysis, tensors, scores)

    def plan_at(self, scored: Scored, ratio: float, allocation: str, meta: dict | None = None) -> Plan:
        """The plan that ``allocation`` (``uniform`` or ``global``) makes at ``ratio``."""
        removals = ALLOCATIONS[allocation](scored.groups, scored.scores, ratio, round_to=self.round_to)
        return make_plan(scored.groups, removals, scored.tensors, meta={
            "criterion": self.criterion_name, "strategy": allocation, "ratio": ratio, "round_to": self.round_to,
            **(meta or {})})

    def fit(self, model: nn.Module, scored: Scored, targets: list[Target], allocation: str) -> Fit:
        """The smallest ``allocation`` ratio whose plan meets ``targets`` (priced on meta copies)."""
        with self.meter.phase("fit"):
            fit = fit_ratio(lambda r: self.plan_at(scored, r, allocation), targets, model, self.example_inputs)
        self.meter.cost_evaluations += fit.evaluations
        fit.plan.meta["budget_fit"] = {k: float(v) for k, v in fit.costs.items()}
        return fit

    def costs(self, targets: list[Target], model: nn.Module, plans: list[Plan]) -> dict[str, float]:
        """What ``model`` costs after ``plans``, per target."""
        with self.meter.phase("fit"):
            out = plan_cost(targets, model, self.example_inputs, plans)
        self.meter.cost_evaluations += 1
        return out

    def accuracy(self, model: nn.Module) -> float:
        """The user's ``evaluate(model)``, counted."""
        if self.evaluate is None:
            raise ValueError("this strategy needs evaluate= (a function model -> accuracy in points)")
        return self.meter.evaluate(self.evaluate, model)

    def recalibrate_bn(self, model: nn.Module) -> None:
        """Re-estimate ``model``'s BatchNorm statistics on ``data`` (no-op without data or when disabled)."""
        if not self.recalibrate or self.data is None:
            return
        from edgeprune.recover.batchnorm import recalibrate_bn

        with self.meter.phase("recalibrate"):
            self.meter.forward += recalibrate_bn(model, self.calibration(), None)

    def measure(self, model: nn.Module) -> float:
        """Accuracy of a freshly cut candidate: BatchNorm recalibrated first (see ``edgeprune.recover.batchnorm``)."""
        self.recalibrate_bn(model)
        return self.accuracy(model)

    def loss_points(self, model: nn.Module) -> float:
        """-100 x the mean loss of a freshly cut candidate on ``data`` (BatchNorm recalibrated first):
        a continuous, higher-is-better signal where accuracy on the same data saturates."""
        if self.data is None:
            raise ValueError("the loss signal needs data= (batches of (inputs, targets))")
        from edgeprune.criteria.data import mean_loss

        self.recalibrate_bn(model)
        with self.meter.phase("evaluate"):
            loss, batches = mean_loss(model, self.calibration(), self.loss_fn, None)
        self.meter.forward += batches
        self.meter.evaluations += 1
        return -100.0 * loss

    def measure_plans(self, model: nn.Module, plans: list[Plan], names: list[str], signal: str = "evaluate"
                      ) -> list[float]:
        """The score of each plan cut on a copy of ``model``: the user's accuracy after BatchNorm
        recalibration (``signal="evaluate"``) or -100 x the loss (``"loss"``).

        Without an ``evaluator`` they are measured here, one after another; with one, each is a task
        on its executor's workers (the same figures: every measurement depends on its plan alone).

        Args:
            model: the model the plans cut (not changed).
            plans: the candidates.
            names: one name per plan, for progress and for a failed task's report.
            signal: ``"evaluate"`` or ``"loss"``.

        Returns:
            One score per plan, in order.
        """
        if self.evaluator is not None and plans:
            scores = self.evaluator.measure(self, model, plans, names, signal)
            self.meter.evaluations += len(plans)
            return scores
        from edgeprune.surgery import apply_plan

        measure = self.loss_points if signal == "loss" else self.measure
        return [measure(apply_plan(model, p)) for p in plans]

    def recover(self, model: nn.Module, max_steps: int | None = None,
                lr_window: tuple[int, int] | None = None) -> None:
        """Recalibrate BatchNorm, refit the cut's Linear consumers (``self.reconstruct``, if given),
        then fine-tune ``model`` in place with ``self.finetune`` (if given; ``max_steps`` and
        ``lr_window`` as in ``edgeprune.recover.finetune``)."""
        self.recalibrate_bn(model)
        if self.reconstruct is not None and self.original is not None:
            from edgeprune.recover.reconstruct import reconstruct

            with self.meter.phase("reconstruct"):
                log = reconstruct(model, self.original, self.reconstruct)
            self.meter.forward += log.forward
            self.reconstructed.append(log.to_dict())
        if self.finetune is None:
            return
        from edgeprune.recover.finetune import finetune

        with self.meter.phase("finetune"):
            log = finetune(model, self.finetune, self.teacher, max_steps=max_steps, lr_window=lr_window)
        self.meter.forward += log.forward
        self.meter.backward += log.backward
        self.meter.teacher_forward += log.teacher_forward
        self.meter.finetune_steps += log.steps
