"""Choose the plan of a run: the least pruning whose model meets every target.

Channel pruning searches the pruning ratio by bisection: each candidate is pruned with the run's
strategy and criterion, priced (MACs, parameters, weight bytes), and kept when it meets every
target; the smallest ratio that does wins, since less pruning keeps more accuracy. Each candidate
is optionally evaluated without fine-tuning, which draws the accuracy/MACs curve in the report.

Weight pruning (unstructured or N:M) has nothing to search: the sparsity is the target.

Latency targets (``latency=8ms``, ``speedup=2x``) need a latency model from
``edgeprune.targets``; :func:`latency_model` is the one place that wires it in.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgeprune.result import PruneResult
from edgeprune.run.errors import BadInputError, BudgetNotMetError
from edgeprune.run.recipe import RunRecipe
from edgeprune.run.targets import LATENCY_METRICS, Target

MAX_RATIO = 0.95  # channel pruning keeps at least 5% of each group's units
BISECTION_STEPS = 9  # ratio resolution 0.95 / 2**9 ~ 0.002


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
    """One candidate plan the search priced (and evaluated when asked)."""

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

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "method": self.method, "trials": [asdict(t) for t in self.trials]}


def figures(model: nn.Module, example: torch.Tensor) -> Figures:
    """MACs, parameters and state-dict bytes of ``model`` at ``example``."""
    from edgeprune.measure.macs import count_macs
    from edgeprune.measure.params import count_params
    from edgeprune.measure.size import state_dict_bytes

    return Figures(float(count_macs(model, example).total), float(count_params(model).total),
                   float(state_dict_bytes(model)))


def latency_model(threads: int) -> Any:
    """The latency cost model for ``latency=``/``speedup=`` targets.

    Raises:
        BadInputError: hardware-aware pruning (``edgeprune.targets``) is not available yet.
    """
    try:
        from edgeprune.targets import latency_cost_model  # type: ignore[attr-defined]
    except ImportError:
        raise BadInputError("latency=/speedup= targets need hardware-aware pruning (edgeprune.targets), "
                            "which is not in this version yet; use macs=, params= or size= for now") from None
    return latency_cost_model(threads=threads)


def choose_plan(model: nn.Module, example: torch.Tensor, recipe: RunRecipe, *,
                evaluate: Callable[[nn.Module], float] | None = None,
                on_trial: Callable[[Trial], None] | None = None) -> SearchOutcome:
    """Prune ``model`` (a copy) as little as the recipe's targets allow.

    Args:
        model: the original model (not changed).
        example: its example input.
        recipe: kind, strategy, criterion, round_to, ignore, seed and targets.
        evaluate: ``evaluate(model) -> percent``; with ``recipe.curve`` each candidate is evaluated.
        on_trial: called after each candidate (progress).

    Returns:
        The :class:`SearchOutcome`.

    Raises:
        BudgetNotMetError: even the most pruning the strategy allows misses a target.
        BadInputError: a latency target without hardware-aware pruning.
    """
    from edgeprune.api import prune

    targets = recipe.targets
    if recipe.is_sparse:
        from edgeprune.weights import prune_weights

        sparsity = next((t.value for t in targets if t.metric == "sparsity"), None)
        pattern = "unstructured" if recipe.kind == "weights" else recipe.kind
        result = prune_weights(model, sparsity, pattern=pattern, ignore=recipe.ignore, seed=recipe.seed)
        return SearchOutcome(result, float(result.stats.get("sparsity_pruned", sparsity or 0.0)), "fixed sparsity")
    if any(t.metric in LATENCY_METRICS for t in targets):
        latency_model(recipe.threads)  # raises until edgeprune.targets lands
    original = figures(model, example)
    trials: dict[float, tuple[Trial, PruneResult]] = {}

    def attempt(ratio: float) -> tuple[Trial, PruneResult]:
        if ratio not in trials:
            result = prune(model, example, ratio, kind="channels", criterion=recipe.criterion,
                           strategy=recipe.strategy, ignore=recipe.ignore, round_to=recipe.round_to, seed=recipe.seed)
            got = figures(result.model, example)
            met = all(got.get(t.metric) <= t.limit(original.get(t.metric)) * (1 + 1e-9) for t in targets)
            acc = evaluate(result.model) if evaluate is not None and recipe.curve else None
            trial = Trial(ratio, got.macs, got.params, got.size, met, acc)
            trials[ratio] = (trial, result)
            if on_trial is not None:
                on_trial(trial)
        return trials[ratio]

    top, _ = attempt(MAX_RATIO)
    if not top.met:
        raise BudgetNotMetError(_not_met(targets, original, top, recipe))
    lo, hi = 0.0, MAX_RATIO
    for _ in range(BISECTION_STEPS):
        mid = round((lo + hi) / 2, 6)
        if attempt(mid)[0].met:
            hi = mid
        else:
            lo = mid
    _, best = trials[hi]
    ordered = [t for t, _ in sorted(trials.values(), key=lambda tr: tr[0].ratio)]
    return SearchOutcome(best, hi, f"bisection on the {recipe.strategy} ratio", ordered)


def _not_met(targets: list[Target], original: Figures, reached: Trial, recipe: RunRecipe) -> str:
    parts = []
    for t in targets:
        got, limit = getattr(reached, t.metric), t.limit(original.get(t.metric))
        if got > limit:
            parts.append(f"{t.text}: needs <= {limit:,.0f}, the most pruning reaches {got:,.0f} "
                         f"({got / original.get(t.metric):.2f}x of {original.get(t.metric):,.0f})")
    return (f"the targets cannot be met with --strategy {recipe.strategy} at ratio {MAX_RATIO} "
            f"(groups edgeprune cannot prune keep their size): " + "; ".join(parts))
