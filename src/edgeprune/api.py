"""The public entry points: ``prune`` (the one router every kind and the CLI go through) and its
conveniences ``prune_weights`` and ``prune_blocks``.

    model + example input
      -> kind.propose        trace, groups, criterion, strategy -> plans + the pruned copy (never the caller's model)
      -> recover             refit the cut's consumers by least squares (optional), then fine-tune (and keep
                             going until the accuracy guard is met, up to a cap)
      -> verify              MACs/parameters before and after, accuracy, the guard

Every kind (``edgeprune.kinds``: channels, blocks, weights) plugs into the same path; what differs
is only how it scores and chooses units.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch.nn as nn

from edgeprune.budget import Budget, BudgetError, MacsCost, ParamsCost, price
from edgeprune.kinds import Kind, Resources, make_kind
from edgeprune.recover import Finetune, Reconstruct
from edgeprune.recover.goal import recover_to_guard
from edgeprune.result import Proposal, PruneResult
from edgeprune.surgery import apply_plan
from edgeprune.verify import check_attention_variants

__all__ = ["apply_plan", "prune", "prune_blocks", "prune_weights"]


def prune(model: nn.Module, example_inputs: Any = None, ratio: float | None = None, *, budget: Budget | None = None,
          kind: str | Kind = "channels", data: Iterable | None = None,
          evaluate: Callable[[nn.Module], float] | None = None, finetune: Finetune | None = None,
          max_epochs: int | None = None, seed: int = 0, inplace: bool = False, evaluator: Any = None,
          reconstruct: Reconstruct | None = None, **options: Any) -> PruneResult:
    """Prune a model and return the smaller model with the plans that made it.

    Args:
        model: a trained model. It is not changed unless ``inplace=True``.
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs (weight
            kinds may leave it out).
        ratio: fraction of units to remove (per group for ``uniform``, overall for ``global``; of the
            blocks for ``blocks``; the sparsity for weight kinds); 0.3 (0.25 for blocks) when neither
            ``ratio`` nor ``budget`` is given.
        budget: what to reach instead of a ratio: ``Budget(macs=0.5)``, ``Budget.parse("latency=8ms")``,
            ``Budget(sparsity=0.9)`` for weights; see ``edgeprune.budget``. With ``max_drop`` and
            ``evaluate`` the guard is a goal: with ``finetune``, recovery goes on (up to
            ``max_epochs``) until the drop is within it; a result still outside raises ``BudgetError``
            (the result is on the error as ``.result``).
        kind: ``"channels"`` (conv channels, Linear neurons, attention heads and everything coupled to
            them), ``"blocks"`` (whole residual blocks), ``"weights"`` / ``"2:4"`` / ``"4:8"``
            (sparsity), or a kind config (``edgeprune.kinds.Channels(...)``, ``Blocks(...)``, ``Weights(...)``).
        data: batches of ``(inputs, targets)`` for data-driven criteria, BatchNorm recalibration and
            block scoring.
        evaluate: ``evaluate(model) -> accuracy`` in points (higher is better) on validation data;
            needed by ``sensitivity`` and ``guarded``, and by the guard.
        finetune: ``Finetune(train_loader, epochs, lr, distill=Distill(T, alpha))`` to recover after
            the cut (the iterative strategy spreads it over its steps).
        max_epochs: the cap on fine-tuning epochs spent to meet the guard (default ``max(10, epochs)``).
        seed: for random choices.
        reconstruct: ``Reconstruct(data, batches)`` (channels kind): after each cut, before fine-tuning,
            refit every Linear that reads pruned features by ridge least squares so its outputs on the
            calibration batches match the original's (``edgeprune.recover.reconstruct``). The last
            cut's log is ``stats["reconstruct"]``.
        inplace: prune ``model`` itself instead of a copy.
        evaluator: an ``edgeprune.scale.Evaluator``: the strategies' candidate evaluations (the
            sensitivity scan, the guarded search) become tasks on its executor (Ray, or serial),
            with the same results as measured here.
        **options: the kind's options, by name. ``channels``: ``criterion`` (``"l2"``, ``"l1"``, ``"bn"``,
            ``"taylor"``, ``"fisher"``, ...; see ``edgeprune.criteria``), ``strategy`` (``"uniform"``,
            ``"global"``, ``"sensitivity"``, ``"iterative"``, ``"guarded"``, ``"latency"`` or a config;
            docs/strategies.md), ``ignore``, ``round_to``, ``rules``, ``loss_fn``,
            ``calibration_batches``, ``head_dims`` (cut attention heads within instead of whole).
            ``blocks``: ``n``, ``calibration_batches``. Weight kinds:
            ``pattern``, ``allocation``, ``criterion`` (``"magnitude"``, ``"taylor"``, ``"fisher"``),
            ``ignore``, ``config`` (a ``WeightPruneConfig``), ``sparsity`` (same as ``ratio``).

    Returns:
        A ``PruneResult`` with ``.model``, ``.plans`` (every plan, oldest first: one per step of an
        iterative prune; ``.plan`` is the last), ``.skipped`` (group -> why it was kept) and ``.stats``
        (MACs and params before/after, accuracy, the recovery curve, the strategy's details, and
        ``cost``: forward/backward passes, evaluations and seconds spent).

    Raises:
        TypeError: an option the kind does not take (the message lists those it takes).
        BudgetError: the budget cannot be met, or the guard failed after recovery.

    Example:
        >>> import torch, torchvision, edgeprune
        >>> r = edgeprune.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), ratio=0.5)
        >>> r.model.conv1.out_channels
        32
        >>> r = edgeprune.prune(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64),
        ...                     budget=edgeprune.Budget.parse("macs=0.5"), strategy="global")
        >>> r.stats["macs_after"] <= 0.5 * r.stats["macs_before"]
        True
    """
    started = time.perf_counter()
    if "sparsity" in options:  # the weight kinds' name for the ratio
        sparsity = options.pop("sparsity")
        ratio = sparsity if sparsity is not None else ratio
    config = make_kind(kind, options)
    if reconstruct is not None and config.name != "channels":
        raise ValueError(f"reconstruct refits the layers that read removed channels; the {config.name} kind "
                         f"removes none (use kind='channels')")
    resources = Resources(data=data, evaluate=evaluate, finetune=finetune, seed=seed, evaluator=evaluator,
                          reconstruct=reconstruct)
    sized = example_inputs is not None
    size = (MacsCost(), ParamsCost())
    before = {c.name: price(c, model, example_inputs, []) for c in size} if sized else {}
    accuracy_before = evaluate(model) if evaluate is not None else None
    proposal = config.propose(model, example_inputs, ratio, budget, resources)
    if sized:  # every attention code path the model offers must accept the cut (eager and SDPA, say)
        proposal.stats["attention_checked"] = check_attention_variants(proposal.model, example_inputs)
    max_drop = budget.max_drop if budget is not None else None
    recovery = _recover(model, proposal, resources, accuracy_before, max_drop, max_epochs)
    stats = _stats(config, proposal, budget, before, started)
    if sized:
        stats.update({f"{c.name}_after": price(c, proposal.model, example_inputs, []) for c in size})
        stats.update({f"{c.name}_before": before[c.name] for c in size})
    if recovery is not None:
        stats["recovery"] = recovery.to_dict()
    pruned = _into_caller(model, proposal) if inplace else proposal.model
    result = PruneResult(pruned, list(proposal.plans), skipped=dict(proposal.skipped), stats=stats)
    if evaluate is not None:
        after = recovery.accuracy if recovery is not None else evaluate(pruned)
        stats.update({"accuracy_before": accuracy_before, "accuracy_after": after,
                      "accuracy_drop": accuracy_before - after})
        if max_drop is not None and stats["accuracy_drop"] > max_drop:
            tried = (f" after {recovery.epochs:g} epochs of fine-tuning" if recovery is not None and recovery.epochs
                     else " (no finetune= was given to recover it)")
            error = BudgetError(f"{config.name} pruning ({stats.get('strategy', config.name)}) lost "
                                f"{stats['accuracy_drop']:.2f} accuracy points{tried}, more than max_drop={max_drop}; "
                                f"try strategy='guarded', more fine-tuning or a milder budget")
            error.result = result
            raise error
    return result


def _recover(model: nn.Module, proposal: Proposal, resources: Resources, accuracy_before: float | None,
             max_drop: float | None, max_epochs: int | None):
    """Fine-tune the proposal's model if the strategy did not, and go on while the guard is missed."""
    ft = resources.finetune
    if ft is None:
        return None
    teacher = copy.deepcopy(model).eval() if ft.distill is not None else None
    if resources.evaluate is None or accuracy_before is None:
        if not proposal.recovered:
            from edgeprune.recover.finetune import finetune

            finetune(proposal.model, ft, teacher)
        return None
    return recover_to_guard(proposal.model, ft, resources.evaluate, accuracy_before, max_drop, teacher=teacher,
                            max_epochs=max_epochs, skip_configured=proposal.recovered)


def _stats(config: Kind, proposal: Proposal, budget: Budget | None, before: dict, started: float) -> dict[str, Any]:
    stats: dict[str, Any] = {"kind": config.name, "strategy": config.name, **proposal.stats,
                             "budget": budget.describe() if budget is not None else None,
                             "plans": len(proposal.plans)}
    if proposal.details:
        stats["details"] = {k: v for k, v in proposal.details.items() if k != "unknown_ops"}
    stats["seconds"] = time.perf_counter() - started
    return stats


def _into_caller(model: nn.Module, proposal: Proposal) -> nn.Module:
    """``inplace=True``: the plans replayed on the caller's model, then the weights recovery left."""
    apply_plan(model, proposal.plans, inplace=True)
    model.load_state_dict(proposal.model.state_dict())
    model.train(proposal.model.training)
    return model


def prune_weights(model: nn.Module, sparsity: float | None = None, *, pattern: str = "unstructured",
                  allocation: str = "global", criterion: str = "magnitude", ignore: tuple = (),
                  config: Any = None, data: Iterable | None = None, loss_fn: Any = None,
                  batches: int | None = 8, seed: int = 0, inplace: bool = False) -> PruneResult:
    """Mask the smallest weights of a model: ``prune(model, kind=Weights(...), ratio=sparsity)``.

    The returned model carries masks (reversible with ``edgeprune.surgery.masks.remove_masks``;
    bake them in with ``finalize``), so it can be fine-tuned with the zeros held. It is not faster:
    nothing here reports a speedup.

    Args:
        model: a trained model. It is copied unless ``inplace``.
        sparsity: fraction of the pruned tensors' values to zero; ``None`` for N:M (1 - N/M).
        pattern: ``"unstructured"``, ``"2:4"``, ``"4:8"`` or any ``"N:M"``.
        allocation: ``"global"``, ``"uniform"``, ``"lamp"`` or ``"random"`` (see ``WeightPruneConfig``).
        criterion: ``"magnitude"``, ``"taylor"`` (``|g w|``) or ``"fisher"`` (OBD, ``E[g^2] w^2 / 2``);
            the last two need ``data``.
        ignore: module/tensor name globs or module types to leave dense.
        config: a full ``edgeprune.weights.WeightPruneConfig``; when given, ``sparsity``, ``pattern``,
            ``allocation``, ``criterion`` and ``ignore`` must be left at their defaults.
        data: batches of ``(inputs, targets)`` for the gradient criteria (training data).
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for the gradients (cross-entropy by default).
        batches: how many batches of ``data`` to read (``None``: all).
        seed: the random source for ``"random"``.
        inplace: mask ``model`` itself instead of a copy.

    Returns:
        A ``PruneResult``: the masked model, its plan (kind ``"weights"`` or the N:M pattern, one
        ``MaskEntry`` per masked tensor), ``skipped`` (tensor -> why it stayed dense) and ``stats``
        (sparsity and nonzero counts).

    Example:
        >>> import torch.nn as nn
        >>> from edgeprune import prune_weights
        >>> from edgeprune.weights import WeightPruneConfig
        >>> mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> r = prune_weights(mlp, config=WeightPruneConfig(0.75, protect_first=False))
        >>> round(r.stats["sparsity_pruned"], 2), r.plan.kind
        (0.75, 'weights')
    """
    from edgeprune.kinds import Weights

    if config is not None and (sparsity, pattern, allocation, criterion, tuple(ignore)) != (
            None, "unstructured", "global", "magnitude", ()):
        raise ValueError("pass either config= or the separate options, not both")
    kind = Weights(pattern=pattern, allocation=allocation, criterion=criterion, ignore=tuple(ignore), config=config,
                   loss_fn=loss_fn, calibration_batches=batches)
    return prune(model, None, sparsity, kind=kind, data=data, seed=seed, inplace=inplace)


def prune_blocks(model: nn.Module, example_inputs: Any, ratio: float | None = None, *, n: int | None = None,
                 budget: Budget | None = None, data: Iterable | None = None, batches: int | None = 8,
                 inplace: bool = False) -> PruneResult:
    """Replace the residual blocks with the least Block Influence by the identity:
    ``prune(model, x, ratio, kind=Blocks(n=n), budget=budget)``.

    Args:
        model: a trained model with residual blocks (``y = x + f(x)``; see ``edgeprune.graph.blocks``).
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        ratio: fraction of the residual blocks to drop (rounded down); or give ``n`` or ``budget``.
        n: how many blocks to drop.
        budget: ``Budget(macs=..., params=..., bytes=...)`` (the fewest blocks that meet it), or one latency
            target ``Budget(speedup=..., threads=...)`` measured on the budget's runtime (every
            candidate depth timed in interleaved rounds beside the dense model).
        data: batches of ``(inputs, targets)`` to score the blocks on (``batches`` of them).
        inplace: prune ``model`` itself instead of a copy.

    Returns:
        A ``PruneResult`` whose plan (kind ``"blocks"``) lists the dropped blocks and whose ``stats``
        hold every block's influence and the MACs and parameters before and after.

    Example:
        >>> from edgeprune.tasks import get_task
        >>> task = get_task("mnist-vit")
        >>> r = prune_blocks(task.build(seed=0), task.example_input(), n=1)
        >>> len(r.plan.blocks), len(r.stats["influence"])
        (1, 4)
    """
    from edgeprune.kinds import Blocks

    return prune(model, example_inputs, ratio, kind=Blocks(n=n, calibration_batches=batches), budget=budget,
                 data=data, inplace=inplace)
