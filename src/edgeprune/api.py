"""The public entry points: ``prune`` and ``apply_plan``."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch.nn as nn

from edgeprune.budget import Budget, BudgetError, MacsCost, ParamsCost, Target, price
from edgeprune.criteria import Criterion, get_criterion
from edgeprune.criteria.data import LossFn
from edgeprune.graph.analysis import Ignore
from edgeprune.graph.rules import RuleRegistry
from edgeprune.plan import Plan, plans_of
from edgeprune.recover import Finetune
from edgeprune.result import PruneResult
from edgeprune.strategies import PRESETS, make_plan
from edgeprune.strategies.session import Session
from edgeprune.surgery import apply_plan as _apply_in_place


class Strategy(Protocol):
    """A strategy config: ``run(session, model, targets, ratio) -> details`` prunes ``model`` in place."""

    name: str

    def run(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> dict: ...

WEIGHT_KINDS = ("weights", "unstructured")


def prune(model: nn.Module, example_inputs: Any, ratio: float | None = None, *, budget: Budget | None = None,
          kind: str = "channels", criterion: str | Criterion = "l2", strategy: str | Strategy = "uniform",
          ignore: Ignore = (), round_to: int = 1, sparsity: float | None = None, inplace: bool = False,
          rules: RuleRegistry | None = None, seed: int = 0, data: Iterable | None = None,
          evaluate: Callable[[nn.Module], float] | None = None, finetune: Finetune | None = None,
          loss_fn: LossFn | None = None, calibration_batches: int | None = 8) -> PruneResult:
    """Prune a model and return the smaller model with the plan that made it.

    Args:
        model: a trained model. It is not changed unless ``inplace=True``.
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        ratio: fraction of units to remove (per group for ``uniform``, overall for ``global``);
            0.3 when neither ``ratio`` nor ``budget`` is given.
        budget: what to reach instead of a ratio: ``Budget(macs=0.5)`` (half the MACs),
            ``Budget(params=..., bytes=..., latency_ms=..., max_drop=1.0)``; see ``edgeprune.budget``.
            With ``max_drop`` and ``evaluate``, a result that loses more accuracy raises ``BudgetError``
            (the result is on the error as ``.result``); the ``guarded`` strategy searches for the
            largest cut within it.
        kind: ``"channels"`` (structured: conv channels, linear neurons, attention heads, and
            everything coupled to them), ``"blocks"`` (depth: whole residual blocks ``y = x + f(x)``
            replaced by the identity, the least Block Influence first: ``ratio`` of them, 0.25 by
            default, or the fewest that meet a MAC/parameter/byte ``budget``; see ``edgeprune.depth``),
            or ``"weights"``, ``"2:4"``, ``"4:8"`` (sparsity; see ``edgeprune.weights``).
        criterion: ``"l1"``, ``"l2"``, ``"l1-out"``, ``"l2-out"``, ``"random"``, ``"bn"`` (BatchNorm
            scale), ``"taylor"``, ``"fisher"``, ``"activation"``, ``"apoz"`` (the last four need
            ``data``), or a callable ``(group, ScoreContext) -> scores``. Weight kinds take
            ``"taylor"`` or ``"fisher"`` (per weight, with ``data``) and read the norms as magnitude.
        strategy: ``"uniform"``, ``"global"``, ``"sensitivity"``, ``"iterative"``, ``"guarded"``, or a
            config (``OneShot``, ``Sensitivity``, ``Iterative``, ``Guarded`` from ``edgeprune.strategies``).
            ``docs/strategies.md`` says when to use which.
        ignore: modules whose outputs must keep every unit (names with globs, objects or types).
        round_to: keep channel counts at multiples of this where a group is large enough.
        sparsity: for weight kinds, the fraction of weights to zero (defaults to ``ratio``).
        inplace: prune ``model`` itself instead of a copy.
        rules: op rules extended for custom ops (``edgeprune.graph.default_rules().copy()``).
        seed: for random choices.
        data: batches of ``(inputs, targets)`` for gradient and activation criteria.
        evaluate: ``evaluate(model) -> accuracy`` in points (higher is better) on validation data;
            needed by ``sensitivity`` and ``guarded``, and reported when given.
        finetune: ``Finetune(train_loader, epochs, lr, distill=Distill(T, alpha))`` to recover after
            the cut (the iterative strategy spreads it over its steps).
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for the gradient criteria (cross-entropy by default).
        calibration_batches: batches of ``data`` that gradient/activation criteria read.

    Returns:
        A ``PruneResult`` with ``.model``, ``.plan`` (the last plan; an iterative prune leaves each
        step's plan on the model, ``edgeprune.plan.plans_of(result.model)``), ``.skipped`` (group ->
        why it was kept) and ``.stats`` (MACs and params before/after, accuracy, the strategy's
        details, and ``cost``: forward/backward passes, evaluations and seconds spent).

    Example:
        >>> import torch, torchvision, edgeprune
        >>> r = edgeprune.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), ratio=0.5)
        >>> r.model.conv1.out_channels
        32
        >>> from edgeprune.budget import Budget
        >>> r = edgeprune.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64),
        ...                     budget=Budget(macs=0.5), strategy="global")
        >>> r.stats["macs_after"] <= 0.5 * r.stats["macs_before"]
        True
    """
    if kind in WEIGHT_KINDS or ":" in kind:
        from edgeprune.weights import prune_weights
        from edgeprune.weights.config import weight_criterion

        if budget is not None:
            raise ValueError("budget= is for structured pruning (kind='channels'); give weight kinds a sparsity")
        pattern = "unstructured" if kind in WEIGHT_KINDS else kind
        default = None if pattern != "unstructured" else 0.3  # N:M fixes its own sparsity (1 - N/M)
        amount = sparsity if sparsity is not None else (default if ratio is None else ratio)
        return prune_weights(model, amount, pattern=pattern, ignore=ignore, inplace=inplace, seed=seed,
                             criterion=weight_criterion(criterion), data=data, loss_fn=loss_fn,
                             batches=calibration_batches)
    if kind == "blocks":
        from edgeprune.depth import prune_blocks

        if ratio is None and budget is None:
            ratio = 0.25
        return prune_blocks(model, example_inputs, ratio, budget=budget, data=data, batches=calibration_batches,
                            inplace=inplace)
    if kind != "channels":
        raise ValueError(f"unknown kind {kind!r}: use 'channels', 'blocks', 'weights', '2:4' or '4:8'")
    if ratio is not None and budget is not None and budget.has_cost:
        raise ValueError("give either ratio= or a cost budget=, not both")
    if ratio is None and (budget is None or not budget.has_cost) and _needs_no_target(strategy):
        ratio = 0.3
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    config = _strategy(strategy)
    score = get_criterion(criterion)
    started = time.perf_counter()
    teacher = copy.deepcopy(model).eval() if finetune is not None and finetune.distill is not None else None
    target = model if inplace else copy.deepcopy(model)
    session = Session(example_inputs, score, criterion if isinstance(criterion, str) else repr(criterion),
                      ignore=ignore, rules=rules, round_to=round_to, seed=seed, data=data, loss_fn=loss_fn,
                      calibration_batches=calibration_batches, evaluate=evaluate, finetune=finetune, teacher=teacher,
                      max_drop=budget.max_drop if budget is not None else None)
    targets = budget.targets(target, example_inputs) if budget is not None and budget.has_cost else []
    size = [MacsCost(), ParamsCost()]
    before = {c.name: price(c, target, example_inputs, []) for c in size}
    accuracy_before = session.accuracy(target) if evaluate is not None else None
    plans_before = len(plans_of(target))
    info = config.run(session, target, targets, ratio)
    plans = plans_of(target)[plans_before:]
    plan = plans[-1] if plans else make_plan([], {}, {}, meta={"strategy": config.name, "note": "nothing removed"})
    after = {c.name: price(c, target, example_inputs, []) for c in size}
    stats: dict[str, Any] = {
        "seconds": time.perf_counter() - started, "strategy": config.name, "criterion": session.criterion_name,
        "budget": budget.describe() if budget is not None else None, "plans": len(plans),
        "macs_before": before["macs"], "macs_after": after["macs"],
        "params_before": before["params"], "params_after": after["params"],
        "groups": info.get("groups", len(plan.groups)), "skipped_groups": len(session.skipped),
        "probe_rounds": info.get("probe_rounds", 0), "unknown_ops": info.get("unknown_ops", {}),
        "details": {k: v for k, v in info.items() if k not in ("skipped", "unknown_ops")}}
    for t in targets:
        stats[f"budget_{t.name}"] = {"limit": t.limit, "original": t.original}
    if evaluate is not None:
        stats["accuracy_before"] = accuracy_before
        stats["accuracy_after"] = session.accuracy(target)
        stats["accuracy_drop"] = accuracy_before - stats["accuracy_after"]
    stats["cost"] = session.meter.as_dict()
    result = PruneResult(target, plan, skipped=dict(session.skipped), stats=stats)
    max_drop = budget.max_drop if budget is not None else None
    if max_drop is not None and evaluate is not None and stats["accuracy_drop"] > max_drop:
        error = BudgetError(f"strategy {config.name!r} lost {stats['accuracy_drop']:.2f} accuracy points, more than "
                            f"max_drop={max_drop}; try strategy='guarded' or a milder budget")
        error.result = result
        raise error
    return result


def _strategy(strategy: str | Strategy) -> Strategy:
    if isinstance(strategy, str):
        if strategy not in PRESETS:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[strategy]
    if not hasattr(strategy, "run"):
        raise TypeError(f"strategy must be a name or a strategy config with .run(), got {type(strategy).__name__}")
    return strategy


def _needs_no_target(strategy: str | Strategy) -> bool:
    """Whether a strategy without ratio or cost budget should fall back to the default ratio."""
    name = strategy if isinstance(strategy, str) else getattr(strategy, "name", "")
    return name in ("uniform", "global", "iterative")


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
