"""Recovery after pruning: fine-tune the pruned model, optionally distilling from the original.

This is the one place a run builds its recovery; it uses ``edgeprune.recover`` (AdamW, cosine
schedule, cross-entropy, and with ``distill`` a soft loss against the unpruned model). Sparsity
masks stay in place while training.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn


@dataclass
class FinetuneReport:
    """What fine-tuning did: epochs run, optimizer steps, seconds, whether it distilled, and (working to
    the guard) the accuracy after each epoch and whether the guard was met."""

    epochs: float = 0.0
    steps: int = 0
    seconds: float = 0.0
    distill: bool = False
    curve: list = field(default_factory=list)
    extra_epochs: int = 0
    guard_met: bool | None = None
    world: int = 1  # processes that fine-tuned (DistributedDataParallel ranks)
    rank_max_abs_diff: float | None = None  # the largest parameter difference of any rank from rank 0


def finetune_config(train: Iterable, *, epochs: int, lr: float, seed: int, distill: bool,
                    loss_fn: Callable[..., Any] | None = None) -> Any:
    """The ``edgeprune.recover.Finetune`` of a run (also handed to the iterative strategy); ``loss_fn``
    is a built-in task's own loss (cross-entropy when None)."""
    from edgeprune.recover import Distill, Finetune

    return Finetune(train_loader=train, epochs=epochs, lr=lr, seed=seed, distill=Distill() if distill else None,
                    loss_fn=loss_fn)


def fine_tune(model: nn.Module, config: Any, teacher: nn.Module | None = None, *,
              evaluate: Callable[[nn.Module], float] | None = None, baseline: float | None = None,
              max_drop: float | None = None, max_epochs: int | None = None,
              already: bool = False) -> FinetuneReport:
    """Fine-tune ``model`` in place with an ``edgeprune.recover.Finetune`` config; with a guard
    (``max_drop``, ``evaluate`` and the original's ``baseline``), keep going until it is met
    (``edgeprune.recover.goal.recover_to_guard``).

    Args:
        model: the pruned model (masked or physically smaller).
        config: from :func:`finetune_config`.
        teacher: the unpruned model, needed when the config distils.
        evaluate: ``evaluate(model) -> percent`` on validation data.
        baseline: the original model's accuracy.
        max_drop: the guard.
        max_epochs: the cap on epochs in all.
        already: the configured epochs already ran (the iterative strategy fine-tuned between its steps).

    Returns:
        A :class:`FinetuneReport`.
    """
    from edgeprune.recover import finetune
    from edgeprune.recover.goal import recover_to_guard

    teacher = teacher if config.distill is not None else None
    if evaluate is not None and baseline is not None and max_drop is not None:
        started = time.perf_counter()
        got = recover_to_guard(model, config, evaluate, baseline, max_drop, teacher=teacher, max_epochs=max_epochs,
                               skip_configured=already)
        return FinetuneReport(got.epochs + (config.epochs if already else 0), got.steps,
                              time.perf_counter() - started, config.distill is not None,
                              [list(p) for p in got.curve], got.extra_epochs, got.met)
    if config.epochs <= 0 or already:
        return FinetuneReport(float(config.epochs) if already else 0.0, 0, 0.0, config.distill is not None)
    log = finetune(model, config, teacher=teacher)
    return FinetuneReport(log.epochs, log.steps, log.seconds, config.distill is not None)
