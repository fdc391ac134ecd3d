"""The public entry points: ``prune`` and ``apply_plan``."""
from __future__ import annotations

import copy
import time
from typing import Any

import torch.nn as nn

from edgeprune.criteria import Criterion, ScoreContext, get_criterion
from edgeprune.errors import UnsupportedModelError
from edgeprune.graph import analyze
from edgeprune.graph.analysis import Ignore
from edgeprune.graph.rules import RuleRegistry
from edgeprune.plan import Plan
from edgeprune.result import PruneResult
from edgeprune.strategies import STRATEGIES, make_plan
from edgeprune.surgery import apply_plan as _apply_in_place
from edgeprune.surgery import named_tensors

WEIGHT_KINDS = ("weights", "unstructured")


def prune(model: nn.Module, example_inputs: Any, ratio: float = 0.3, *, kind: str = "channels",
          criterion: str | Criterion = "l2", strategy: str = "uniform", ignore: Ignore = (), round_to: int = 1,
          sparsity: float | None = None, inplace: bool = False, rules: RuleRegistry | None = None,
          seed: int = 0) -> PruneResult:
    """Prune a model and return the smaller model with the plan that made it.

    Args:
        model: a trained model. It is not changed unless ``inplace=True``.
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        ratio: fraction of units to remove (per group for ``uniform``, overall for ``global``).
        kind: ``"channels"`` (structured: conv channels, linear neurons, and everything coupled
            to them), or ``"weights"``, ``"2:4"``, ``"4:8"`` (sparsity; see ``edgeprune.weights``).
        criterion: ``"l1"``, ``"l2"``, ``"l1-out"``, ``"l2-out"``, ``"random"``, or a callable.
        strategy: ``"uniform"`` or ``"global"``.
        ignore: modules whose outputs must keep every unit (names with globs, objects or types).
        round_to: keep channel counts at multiples of this where a group is large enough.
        sparsity: for weight kinds, the fraction of weights to zero (defaults to ``ratio``).
        inplace: prune ``model`` itself instead of a copy.
        rules: op rules extended for custom ops (``edgeprune.graph.default_rules().copy()``).
        seed: for random choices.

    Returns:
        A ``PruneResult`` with ``.model``, ``.plan`` and ``.skipped`` (group -> why it was kept).

    Example:
        >>> import torch, torchvision, edgeprune
        >>> r = edgeprune.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), ratio=0.5)
        >>> r.model.conv1.out_channels
        32
    """
    if kind in WEIGHT_KINDS or ":" in kind:
        from edgeprune.weights import prune_weights

        pattern = "unstructured" if kind in WEIGHT_KINDS else kind
        return prune_weights(model, ratio if sparsity is None else sparsity, pattern=pattern, ignore=ignore,
                             inplace=inplace, seed=seed)
    if kind != "channels":
        raise ValueError(f"unknown kind {kind!r}: use 'channels', 'weights', '2:4' or '4:8'")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    score = get_criterion(criterion)
    started = time.perf_counter()
    target = model if inplace else copy.deepcopy(model)
    analysis = analyze(target, example_inputs, ignore=ignore, rules=rules)
    if not analysis.groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(analysis.skipped.items())[:5])
        raise UnsupportedModelError(f"no prunable group found in {type(model).__name__}"
                                    + (f" (e.g. {reasons})" if reasons else ""))
    tensors = named_tensors(target)
    ctx = ScoreContext(tensors, seed=seed)
    scores = {g.name: score(g, ctx) for g in analysis.groups}
    removals = STRATEGIES[strategy](analysis.groups, scores, ratio, round_to=round_to)
    meta = {"criterion": criterion if isinstance(criterion, str) else repr(criterion), "strategy": strategy,
            "ratio": ratio, "round_to": round_to}
    plan = make_plan(analysis.groups, removals, tensors, meta=meta)
    _apply_in_place(target, plan)
    stats = {"seconds": time.perf_counter() - started, "groups": len(analysis.groups),
             "skipped_groups": len(analysis.skipped), "probe_rounds": analysis.probe_rounds,
             "unknown_ops": dict(analysis.trace.unknown_ops)}
    return PruneResult(target, plan, skipped=analysis.skipped, stats=stats)


def apply_plan(model: nn.Module, plan: Plan | str | dict, *, inplace: bool = False) -> nn.Module:
    """Apply a plan (a ``Plan``, its JSON text, or its dict) to a fresh copy of the model it was made for.

    Returns the pruned model (``model`` itself when ``inplace=True``); raises ``PlanError`` when the
    plan does not fit, leaving ``model`` untouched.
    """
    if isinstance(plan, str):
        plan = Plan.from_json(plan)
    elif isinstance(plan, dict):
        plan = Plan.from_dict(plan)
    target = model if inplace else copy.deepcopy(model)
    _apply_in_place(target, plan)
    if plan.masks:
        from edgeprune.surgery.masks import apply_masks

        apply_masks(target, plan)
    return target
