"""Choose the plan of a run: the run's targets become an ``edgeprune.budget.Budget`` and
``edgeprune.prune`` with the run's strategy finds the plan (one-shot strategies fit the least
pruning that meets every target; ``sensitivity`` scans each group; ``guarded`` also keeps the
accuracy drop within ``max_drop``; ``iterative`` prunes in steps and fine-tunes between them).

Weight pruning (unstructured or N:M) has nothing to search: the sparsity is the target.

Latency targets (``latency=8ms``, ``speedup=2x``) need a latency model from
``edgeprune.targets``; :func:`latency_model` is the one place that wires it in.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgeprune.result import PruneResult
from edgeprune.run.errors import BadInputError, BudgetNotMetError
from edgeprune.run.recipe import RunRecipe
from edgeprune.run.targets import LATENCY_METRICS, Target

BUDGET_NAMES = {"macs": "macs", "params": "params", "size": "bytes", "latency": "latency_ms", "speedup": "speedup"}
CURVE_RATIOS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)
STRATEGIES_THAT_EVALUATE = ("sensitivity", "guarded", "iterative")


@dataclass
class Figures:
    """The cheap figures a target is checked on."""

    macs: float
    params: float
    size: float  # bytes of the state dict

    def get(self, metric: str) -> float:
        return {"macs": self.macs, "params": self.params, "size": self.size}[metric]


@dataclass
class Trial:
    """One point of the accuracy/cost curve: a one-shot cut at ``ratio``, not fine-tuned."""

    ratio: float
    macs: float
    params: float
    size: float
    met: bool
    accuracy: float | None = None


@dataclass
class SearchOutcome:
    """The chosen pruned model and how it was found."""

    result: PruneResult
    ratio: float
    method: str
    trials: list[Trial] = field(default_factory=list)
    finetuned: bool = False  # the strategy fine-tuned already (iterative)
    sensitivity: dict | None = None  # the sensitivity strategy's curves, in the report's form

    def to_dict(self) -> dict[str, Any]:
        ratio = None if self.ratio != self.ratio else self.ratio  # NaN (no single ratio) -> null
        return {"ratio": ratio, "method": self.method, "trials": [asdict(t) for t in self.trials],
                "stats": {k: v for k, v in self.result.stats.items() if k != "details"}}


def figures(model: nn.Module, example: torch.Tensor) -> Figures:
    """MACs, parameters and state-dict bytes of ``model`` at ``example``."""
    from edgeprune.measure.macs import count_macs
    from edgeprune.measure.params import count_params
    from edgeprune.measure.size import state_dict_bytes

    return Figures(float(count_macs(model, example).total), float(count_params(model).total),
                   float(state_dict_bytes(model)))


def latency_model(model: nn.Module, example: torch.Tensor, threads: int) -> Any:
    """The latency predictor for ``latency=``/``speedup=`` targets: a lookup table of this model's
    layers measured on ONNX Runtime at ``threads`` (``edgeprune.targets``), summed by a predictor.

    Raises:
        BadInputError: hardware-aware pruning (``edgeprune.targets``) is not installed.
    """
    try:
        from edgeprune.targets import LatencyPredictor, TableConfig, build_table
    except ImportError:
        raise BadInputError("latency=/speedup= targets need hardware-aware pruning (edgeprune.targets), "
                            "which is not in this version yet; use macs=, params= or size= for now") from None
    return LatencyPredictor(build_table(model, example, TableConfig(threads=threads)))


def budget_for(recipe: RunRecipe, targets: list[Target], model: nn.Module, example: torch.Tensor) -> Any:
    """The ``edgeprune.budget.Budget`` of a channel-pruning run.

    ``max_drop`` goes into the budget only for the ``guarded`` strategy, which searches with it;
    otherwise the run checks the guard after fine-tuning (see the pipeline).
    """
    from edgeprune.budget import Budget

    values = {BUDGET_NAMES[t.metric]: t.value for t in targets}
    latency = latency_model(model, example, recipe.threads) if any(t.metric in LATENCY_METRICS for t in targets) else None
    return Budget(**values, max_drop=recipe.max_drop if recipe.strategy == "guarded" else None,
                  latency_model=latency)


def choose_plan(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, *,
                evaluate: Callable[[nn.Module], float] | None = None, train: Iterable | None = None,
                finetune: Any = None, on_trial: Callable[[Trial], None] | None = None) -> SearchOutcome:
    """Prune ``model`` (a copy) to the recipe's targets with its strategy.

    Args:
        model: the original model (not changed).
        example: its example input.
        recipe: kind, strategy, criterion, round_to, ignore, seed and targets.
        evaluate: ``evaluate(model) -> percent``; strategies that measure accuracy use it, and with
            ``recipe.curve`` a few one-shot cuts are evaluated to draw accuracy against MACs.
        train: batches for data-driven criteria (``taylor``, ``fisher``, ``activation``, ``apoz``).
        finetune: an ``edgeprune.recover.Finetune`` for the ``iterative`` strategy, which
            fine-tunes between its steps (the outcome then says ``finetuned``).
        on_trial: called after each curve point (progress).

    Returns:
        The :class:`SearchOutcome`.

    Raises:
        BudgetNotMetError: the strategy cannot meet the targets (or the guard, for ``guarded``).
        BadInputError: a latency target without hardware-aware pruning.
    """
    from edgeprune.api import prune
    from edgeprune.budget import BudgetError

    targets = recipe.targets
    if recipe.is_sparse:
        from edgeprune.weights import prune_weights
        from edgeprune.weights.config import weight_criterion

        sparsity = next((t.value for t in targets if t.metric == "sparsity"), None)
        pattern = "unstructured" if recipe.kind == "weights" else recipe.kind
        result = prune_weights(model, sparsity, pattern=pattern, ignore=recipe.ignore, seed=recipe.seed,
                               criterion=weight_criterion(recipe.criterion), data=train)
        return SearchOutcome(result, float(result.stats.get("sparsity_pruned", sparsity or 0.0)), "fixed sparsity")
    if recipe.kind == "blocks":
        return _prune_blocks(model, example, recipe, targets, train)
    latency = [t for t in targets if t.metric in LATENCY_METRICS]
    if latency:
        return _prune_to_latency(model, example, recipe, latency)
    budget = budget_for(recipe, targets, model, example)
    iterative = recipe.strategy == "iterative" and finetune is not None
    try:
        result = prune(model, example, budget=budget, kind="channels", criterion=recipe.criterion,
                       strategy=recipe.strategy, ignore=recipe.ignore, round_to=recipe.round_to, seed=recipe.seed,
                       data=train, finetune=finetune if iterative else None,
                       evaluate=evaluate if recipe.strategy in STRATEGIES_THAT_EVALUATE else None)
    except BudgetError as exc:
        raise BudgetNotMetError(f"{exc} (strategy {recipe.strategy!r}, targets {', '.join(recipe.target)})") from None
    details = result.stats.get("details", {})
    ratio = details.get("ratio")
    trials = curve(model, example, recipe, evaluate, on_trial) if recipe.curve and evaluate is not None else []
    outcome = SearchOutcome(result, float(ratio) if ratio is not None else float("nan"),
                            f"{recipe.strategy} strategy, budget {budget.describe()}", trials)
    outcome.finetuned = iterative
    outcome.sensitivity = sensitivity_for_report(details.get("curves"))
    return outcome


def _prune_blocks(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, targets: list[Target],
                  train: Any) -> SearchOutcome:
    """``--kind blocks``: the fewest residual blocks, least Block Influence first, that meet the targets
    (a latency target measured on ONNX Runtime at ``recipe.threads``)."""
    from edgeprune.budget import BudgetError
    from edgeprune.depth import prune_blocks

    latency = [t for t in targets if t.metric in LATENCY_METRICS]
    try:
        if latency:
            t = latency[0]
            if t.metric == "speedup" or t.relative:  # latency=0.5: half the original's
                how = {"speedup": t.value if t.metric == "speedup" else 1 / t.value}
            else:
                how = {"latency_ms": t.value}
            result = prune_blocks(model, example, **how, threads=recipe.threads, data=train)
            described = f"{t.metric} {t.value:g} measured on ONNX Runtime"
        else:
            budget = budget_for(recipe, targets, model, example)
            result = prune_blocks(model, example, budget=budget, data=train)
            described = f"budget {budget.describe()}"
    except BudgetError as exc:
        raise BudgetNotMetError(f"{exc} (targets {', '.join(recipe.target)})") from None
    return SearchOutcome(result, float("nan"), f"depth: {result.stats['dropped']} of {result.stats['blocks']} "
                                               f"residual blocks dropped, {described}")


def _prune_to_latency(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, targets: list[Target]
                      ) -> SearchOutcome:
    """Latency targets: ``edgeprune.latency_aware`` allocates on the target's latency table, measures
    the pruned model on ONNX Runtime and tightens until the measurement meets the target."""
    from edgeprune.budget import BudgetError

    if len(targets) > 1:
        raise BadInputError("give one latency target (latency= or speedup=), not both")
    try:
        from edgeprune.latency_aware import LatencyBudget, MeasureConfig, prune_to_latency
    except ImportError:
        raise BadInputError("latency=/speedup= targets need hardware-aware pruning (edgeprune.latency_aware), "
                            "which is not installed; use macs=, params= or size= instead") from None
    t = targets[0]
    if t.metric == "latency" and t.relative:
        budget = LatencyBudget(speedup=1 / t.value)  # a fraction of the original latency
    else:
        budget = LatencyBudget(latency_ms=t.value) if t.metric == "latency" else LatencyBudget(speedup=t.value)
    predictor = latency_model(model, example, recipe.threads)
    try:
        found = prune_to_latency(model, example, predictor, budget, criterion=recipe.criterion,
                                 measure=MeasureConfig(threads=recipe.threads))
    except BudgetError as exc:
        raise BudgetNotMetError(f"{exc} (target {t.text})") from None
    result = PruneResult(found.model, found.plan, stats={"latency_attempts": len(found.attempts),
                                                          "measured_ms": found.measured_ms,
                                                          "predicted_ms": found.predicted_ms, "met": found.met})
    return SearchOutcome(result, float("nan"), f"latency-aware allocation on the ONNX Runtime table at "
                                               f"{recipe.threads} threads, {len(found.attempts)} measured round(s)")


def curve(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, evaluate: Callable[[nn.Module], float],
          on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """Accuracy (not fine-tuned) and cost of one-shot cuts at :data:`CURVE_RATIOS`, for the report.

    The allocation is the run's strategy when it is one-shot (``uniform``, ``global``), else ``uniform``.
    """
    from edgeprune.api import prune

    allocation = recipe.strategy if recipe.strategy in ("uniform", "global") else "uniform"
    trials = []
    for ratio in CURVE_RATIOS:
        result = prune(model, example, ratio, kind="channels", criterion=recipe.criterion, strategy=allocation,
                       ignore=recipe.ignore, round_to=recipe.round_to, seed=recipe.seed)
        got = figures(result.model, example)
        trial = Trial(ratio, got.macs, got.params, got.size, True, evaluate(result.model))
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    return trials


def sensitivity_for_report(curves: dict | None) -> dict | None:
    """The strategy's sensitivity curves in the report's form: ``{"metric", "curves": {group: [[ratio, acc]]}}``."""
    if not curves:
        return None
    groups = curves.get("groups", {})
    return {"metric": curves.get("metric", "accuracy"), "base": curves.get("base_accuracy"),
            "curves": {name: [[0.0, curves.get("base_accuracy")]] + [list(p) for p in zip(c["ratios"], c["accuracy"])]
                       for name, c in groups.items()}}
