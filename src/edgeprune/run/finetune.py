"""Recovery after pruning: fine-tune the pruned model on the training data.

This is the one place a run calls recovery; it uses the plain training loop of
``edgeprune.tasks`` (AdamW, one-cycle schedule, cross-entropy), which keeps sparsity masks in place.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch.nn as nn


@dataclass
class FinetuneReport:
    """What fine-tuning did: epochs run, mean loss per epoch, seconds."""

    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def fine_tune(model: nn.Module, train: Iterable, *, epochs: int, lr: float, seed: int,
              on_epoch: Callable[[int, float], None] | None = None) -> FinetuneReport:
    """Fine-tune ``model`` in place for ``epochs`` passes over ``train``.

    Args:
        model: the pruned model (masked or physically smaller).
        train: yields ``(inputs, targets)`` batches.
        epochs: passes over ``train`` (0 does nothing).
        lr: peak learning rate.
        seed: seeds dropout and other random ops.
        on_epoch: ``on_epoch(epoch_index, mean_loss)`` after each epoch.

    Returns:
        A :class:`FinetuneReport`.
    """
    from edgeprune.tasks import train as train_loop

    if epochs <= 0:
        return FinetuneReport()
    log = train_loop(model, train, epochs=epochs, lr=lr, seed=seed, on_epoch=on_epoch)  # type: ignore[arg-type]
    return FinetuneReport(log.epochs, list(log.epoch_losses), log.seconds)
