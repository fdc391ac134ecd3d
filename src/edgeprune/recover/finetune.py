"""Fine-tuning after pruning: AdamW with cosine decay, optional distillation, early stopping."""
from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.recover.distill import Distill, distill_loss

LossFn = Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Finetune:
    """How to fine-tune a pruned model (the recovery step of ``edgeprune.prune``).

    Attributes:
        train_loader: yields ``(inputs, targets)``.
        epochs: passes over ``train_loader`` (the iterative strategy spreads them over its steps).
        lr: peak learning rate; it decays to zero along a cosine over the run.
        weight_decay: AdamW weight decay.
        distill: distil from the unpruned model (``Distill(temperature, alpha)``), or ``None``.
        val_loader: data for early stopping; with it, the best epoch's weights are kept.
        patience: stop after this many epochs without a better validation score (needs ``val_loader``).
        evaluate: ``evaluate(model, val_loader) -> score`` (higher is better); top-1 accuracy in percent by default.
        loss_fn: ``loss_fn(model, inputs, targets) -> loss`` for the hard term; cross-entropy by default.
        seed: seeds torch's RNG during the run (dropout, augmentation); the caller's state is restored.

    Example:
        >>> ft = Finetune(train_loader=[(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))], epochs=2, lr=1e-3)
        >>> log = finetune(nn.Linear(4, 2), ft)
        >>> log.steps, log.backward
        (2, 2)
    """

    train_loader: Iterable
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.0
    distill: Distill | None = None
    val_loader: Iterable | None = None
    patience: int | None = None
    evaluate: Callable[[nn.Module, Iterable], float] | None = None
    loss_fn: LossFn | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.patience is not None and self.val_loader is None:
            raise ValueError("patience (early stopping) needs val_loader")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)  # type: ignore[arg-type]


@dataclass
class FinetuneLog:
    """What a fine-tuning run did and cost."""

    steps: int = 0
    epochs: float = 0.0
    forward: int = 0  # student forward passes (batches), validation included
    backward: int = 0
    teacher_forward: int = 0
    seconds: float = 0.0
    val_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


def finetune(model: nn.Module, config: Finetune, teacher: nn.Module | None = None,
             max_steps: int | None = None, lr_window: tuple[int, int] | None = None) -> FinetuneLog:
    """Fine-tune ``model`` in place; return what it cost.

    Args:
        model: the pruned model (left in eval mode).
        config: the :class:`Finetune` settings.
        teacher: the unpruned model, used when ``config.distill`` is set (run in eval mode, no gradients).
        max_steps: optimizer steps to take instead of ``config.epochs`` full passes (the iterative
            strategy splits one budget over its steps); the loader is cycled as needed.
        lr_window: ``(start, length)``: this call is steps ``start, start + 1, ...`` of one cosine
            decay over ``length`` steps (so calls that split a budget continue one schedule instead
            of each decaying from ``config.lr`` again). ``None``: one cosine over this call.

    Returns:
        A :class:`FinetuneLog`.
    """
    if config.distill is not None and teacher is None:
        raise ValueError("Finetune.distill is set but no teacher was given")
    per_epoch = max(1, config.steps_per_epoch)
    total = max_steps if max_steps is not None else config.epochs * per_epoch
    log = FinetuneLog()
    if total <= 0:
        return log
    start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if lr_window is None:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        start_step, length = lr_window
        if start_step < 0 or length < start_step + total:
            raise ValueError(f"lr_window {lr_window} does not hold the {total} steps of this call")
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * (start_step + i) / length)))
    best_score, best_state, bad_epochs = None, None, 0
    if teacher is not None:
        teacher.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in itertools.count():
            model.train()
            taken = 0
            for inputs, targets in config.train_loader:
                if log.steps >= total:
                    break
                loss = _loss(model, inputs, targets, config, teacher, log)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                log.steps += 1
                log.forward += 1
                log.backward += 1
                taken += 1
            log.epochs += taken / per_epoch
            if config.val_loader is not None and taken:
                score = _evaluate(model, config, log)
                log.val_scores.append(score)
                if best_score is None or score > best_score:
                    best_score, best_state, bad_epochs, log.best_epoch = score, copy.deepcopy(model.state_dict()), 0, epoch
                else:
                    bad_epochs += 1
                    if config.patience is not None and bad_epochs >= config.patience:
                        log.stopped_early = log.steps < total
                        break
            if log.steps >= total or not taken:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log


def _loss(model: nn.Module, inputs: Any, targets: torch.Tensor, config: Finetune, teacher: nn.Module | None,
          log: FinetuneLog) -> torch.Tensor:
    if config.distill is None:
        return config.loss_fn(model, inputs, targets) if config.loss_fn else F.cross_entropy(model(inputs), targets)
    with torch.no_grad():
        teacher_logits = teacher(inputs)
    log.teacher_forward += 1
    return distill_loss(model(inputs), teacher_logits, targets, config.distill)


def _evaluate(model: nn.Module, config: Finetune, log: FinetuneLog) -> float:
    model.eval()
    try:
        if config.evaluate is not None:
            return float(config.evaluate(model, config.val_loader))
        correct = total = 0
        with torch.no_grad():
            for inputs, targets in config.val_loader:
                correct += int((model(inputs).argmax(1) == targets).sum())
                total += int(targets.numel())
                log.forward += 1
        return 100.0 * correct / max(total, 1)
    finally:
        model.train()
