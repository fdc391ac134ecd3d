"""The training and evaluation loops shared by every task (and reusable for recovery).

``train`` is deliberately plain: Adam(W), a one-cycle learning-rate schedule, cross-entropy (or a
caller's loss), seeded. Fine-tuning after pruning calls it with a few epochs and a small ``lr``;
distillation passes its own ``loss_fn``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``loss_fn(model, inputs, targets) -> scalar loss``; the default is cross-entropy of ``model(inputs)``."""


@dataclass
class TrainLog:
    """What one call of :func:`train` did."""

    epochs: int
    steps: int
    seconds: float
    epoch_losses: list[float] = field(default_factory=list)  # mean training loss per epoch


def _cross_entropy(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.cross_entropy(model(inputs), targets)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Top-1 accuracy of ``model`` over ``loader``, in percent.

    The model is put in eval mode for the pass and its previous mode is restored afterwards.

    Args:
        model: a classifier returning logits of shape (B, num_classes).
        loader: yields ``(inputs, integer targets)`` batches.

    Returns:
        Accuracy in percent (0-100).

    Example:
        >>> from edgeprune.tasks import get_task, evaluate
        >>> task = get_task("digits")
        >>> acc = evaluate(task.build(seed=0), task.loaders()[1])
        >>> 0.0 <= acc <= 100.0
        True
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for inputs, targets in loader:
            predicted = model(inputs).argmax(dim=1)
            correct += int((predicted == targets).sum())
            total += int(targets.numel())
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate() got an empty loader")
    return 100.0 * correct / total


def train(
    model: nn.Module,
    loader: DataLoader,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int | None = 0,
    loss_fn: LossFn | None = None,
    max_steps: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainLog:
    """Train (or fine-tune) ``model`` in place with AdamW and a one-cycle schedule.

    Args:
        model: the model to train; it is left in eval mode.
        loader: yields ``(inputs, targets)``; its own generator decides the shuffle order.
        epochs: passes over ``loader``.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        seed: seeds torch's global RNG for the duration of the call (dropout, random ops);
            the caller's RNG state is restored afterwards. ``None`` leaves the RNG alone.
        loss_fn: ``loss_fn(model, inputs, targets) -> loss``; cross-entropy by default.
            Distillation passes a loss that also runs a teacher.
        max_steps: stop after this many optimizer steps (for quick checks).
        on_epoch: called as ``on_epoch(epoch_index, mean_loss)`` after each epoch (progress).

    Returns:
        A :class:`TrainLog`.

    Example:
        >>> from edgeprune.tasks import get_task, train
        >>> task = get_task("digits")
        >>> model = task.build(seed=0)
        >>> log = train(model, task.loaders()[0], epochs=1, lr=1e-3)
        >>> log.epochs
        1
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    loss_fn = loss_fn or _cross_entropy
    steps_per_epoch = len(loader)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total_steps, 1))
    log = TrainLog(epochs=0, steps=0, seconds=0.0)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            running, batches = 0.0, 0
            for inputs, targets in loader:
                if log.steps >= total_steps:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model, inputs, targets)
                loss.backward()
                optimizer.step()
                schedule.step()
                running += float(loss.detach())
                batches += 1
                log.steps += 1
            if batches == 0:
                break
            log.epochs += 1
            log.epoch_losses.append(running / batches)
            if on_epoch is not None:
                on_epoch(epoch, running / batches)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
