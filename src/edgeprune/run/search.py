"""Choose the plan of a run: the run's targets become an ``edgeprune.budget.Budget`` and
``edgeprune.prune`` with the run's strategy finds the plan (one-shot strategies fit the least
pruning that meets every target; ``sensitivity`` scans each group; ``guarded`` also keeps the
accuracy drop within ``max_drop``; ``iterative`` prunes in steps and fine-tunes between them).

Weight pruning (unstructured or N:M) has nothing to search: the sparsity is the target. Latency
targets (``latency=8ms``, ``speedup=2x``) take the latency-aware strategy
(``edgeprune.strategies.LatencyAware``), whose table is measured on the run's runtime.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgeprune.budget import LATENCY_METRICS
from edgeprune.result import PruneResult
from edgeprune.run.errors import BudgetNotMetError
from edgeprune.run.recipe import RunRecipe

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


def budget_for(recipe: RunRecipe) -> Any:
    """The ``edgeprune.budget.Budget`` of a run: its terms, on the run's runtime and thread count.

    ``max_drop`` goes into the budget only for the ``guarded`` strategy, which searches with it;
    otherwise the run works to meet the guard while it fine-tunes (see the pipeline).
    """
    from edgeprune.budget import Budget

    # priced at the precision deployed: the arena and flash, and the latency table's kernels
    extra: dict[str, Any] = {"precision": "int8" if recipe.quantize == "int8" else "float32"}
    if recipe.on_microcontroller:  # with the runtime's code beside the file
        from edgeprune.targets.devices import get_device

        extra["runtime_flash"] = float(get_device(recipe.device).runtime_flash) if recipe.device else 0.0
    return Budget.from_terms(recipe.targets, max_drop=recipe.max_drop if recipe.strategy == "guarded" else None,
                             runtime=recipe.runtime, threads=recipe.threads, **extra)


def choose_plan(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, *,
                evaluate: Callable[[nn.Module], float] | None = None, train: Iterable | None = None,
                finetune: Any = None, on_trial: Callable[[Trial], None] | None = None, evaluator: Any = None,
                executor: Any = None) -> SearchOutcome:
    """Prune ``model`` (a copy) to the recipe's targets with its kind and strategy, through ``edgeprune.prune``.

    Args:
        model: the original model (not changed).
        example: its example input.
        recipe: kind, strategy, criterion, round_to, ignore, seed and targets.
        evaluate: ``evaluate(model) -> percent``; strategies that measure accuracy use it, and with
            ``recipe.curve`` a few one-shot cuts are evaluated to draw accuracy against MACs.
        train: batches for data-driven criteria (``taylor``, ``fisher``, ``activation``, ``apoz``) and block scoring.
        finetune: an ``edgeprune.recover.Finetune`` for the ``iterative`` strategy, which
            fine-tunes between its steps (the outcome then says ``finetuned``).
        on_trial: called after each curve point (progress).
        evaluator: an ``edgeprune.scale.Evaluator``: the strategy's candidate evaluations become tasks.
        executor: the run's executor; with a latency target on a Ray executor the whole latency
            search runs as one task on the node that declares the runtime (``edgeprune.run.scale``).

    Returns:
        The :class:`SearchOutcome`.

    Raises:
        BudgetNotMetError: the strategy cannot meet the targets (or the guard, for ``guarded``).
    """
    from edgeprune.api import prune
    from edgeprune.budget import BudgetError

    budget = budget_for(recipe)
    options: dict[str, Any]
    if recipe.is_sparse:
        options = {"criterion": recipe.criterion, "ignore": recipe.ignore}
    elif recipe.kind == "blocks":
        options = {}
    else:
        latency = any(t.metric in LATENCY_METRICS for t in recipe.targets)
        # an arena budget takes the peak-first allocation unless the run names another strategy than the default
        sram = budget.ram is not None and recipe.strategy == "uniform"
        options = {"criterion": recipe.criterion,
                   "strategy": (recipe.strategy if recipe.strategy.startswith("latency") else "latency") if latency
                   else ("sram" if sram else recipe.strategy),
                   "ignore": recipe.ignore, "round_to": recipe.round_to}
    iterative = recipe.strategy == "iterative" and finetune is not None and recipe.kind == "channels"
    remote_latency = executor is not None and recipe.kind == "channels" and not recipe.is_sparse and \
        options.get("strategy") == "latency"
    try:
        if remote_latency:
            from edgeprune.run.scale import latency_prune_remote

            result = latency_prune_remote(executor, model, example, recipe, budget)
        else:
            result = prune(model, example, kind=recipe.kind, budget=budget, data=train, seed=recipe.seed,
                           finetune=finetune if iterative else None, evaluator=evaluator,
                           evaluate=evaluate if recipe.strategy in STRATEGIES_THAT_EVALUATE else None, **options)
    except BudgetError as exc:
        used = options.get("strategy", recipe.strategy)
        targets = ", ".join(t.text for t in recipe.targets)
        raise BudgetNotMetError(f"{exc} (strategy {used!r}, targets {targets})") from None
    details = result.stats.get("details", {})
    if recipe.is_sparse:
        return SearchOutcome(result, float(result.stats.get("sparsity_pruned", budget.sparsity or 0.0)), "fixed sparsity")
    if recipe.kind == "blocks":
        return SearchOutcome(result, float("nan"), f"depth: {result.stats['dropped']} of {result.stats['blocks']} "
                                                   f"residual blocks dropped, budget {budget.describe()}")
    if "latency_attempts" in details:
        return SearchOutcome(result, float("nan"), f"latency-aware allocation on the {budget.runtime} "
                                                   f"{budget.precision} table at "
                                                   f"{budget.threads} threads, {details['latency_attempts']} measured "
                                                   f"round(s)")
    ratio = details.get("ratio")
    trials = curve(model, example, recipe, evaluate, on_trial, data=train) if recipe.curve and evaluate is not None else []
    outcome = SearchOutcome(result, float(ratio) if ratio is not None else float("nan"),
                            f"{options.get('strategy', recipe.strategy)} strategy, budget {budget.describe()}", trials)
    outcome.finetuned = iterative
    outcome.sensitivity = sensitivity_for_report(details.get("curves"))
    return outcome


def curve(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, evaluate: Callable[[nn.Module], float],
          on_trial: Callable[[Trial], None] | None = None, data: Any = None) -> list[Trial]:
    """Accuracy (not fine-tuned) and cost of one-shot cuts at :data:`CURVE_RATIOS`, for the report.

    The allocation is the run's strategy when it is one-shot (``uniform``, ``global``), else ``uniform``;
    ``data`` feeds a data-driven criterion (``activation``, ``taylor``, ...) as in the run's own cut.
    """
    from edgeprune.api import prune

    allocation = recipe.strategy if recipe.strategy in ("uniform", "global") else "uniform"
    trials = []
    for ratio in CURVE_RATIOS:
        result = prune(model, example, ratio, kind="channels", criterion=recipe.criterion, strategy=allocation,
                       ignore=recipe.ignore, round_to=recipe.round_to, seed=recipe.seed, data=data)
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
