"""Recovery after pruning: fine-tune the pruned model, optionally distilling from the original.

This is the one place a run builds its recovery; it uses ``edgeprune.recover`` (AdamW, cosine
schedule, cross-entropy, and with ``distill`` a soft loss against the unpruned model). Sparsity
masks stay in place while training.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch.nn as nn


@dataclass
class FinetuneReport:
    """What fine-tuning did: epochs run, optimizer steps, seconds, and whether it distilled."""

    epochs: float = 0.0
    steps: int = 0
    seconds: float = 0.0
    distill: bool = False


def finetune_config(train: Iterable, *, epochs: int, lr: float, seed: int, distill: bool) -> Any:
    """The ``edgeprune.recover.Finetune`` of a run (also handed to the iterative strategy)."""
    from edgeprune.recover import Distill, Finetune

    return Finetune(train_loader=train, epochs=epochs, lr=lr, seed=seed, distill=Distill() if distill else None)


def fine_tune(model: nn.Module, config: Any, teacher: nn.Module | None = None) -> FinetuneReport:
    """Fine-tune ``model`` in place with an ``edgeprune.recover.Finetune`` config.

    Args:
        model: the pruned model (masked or physically smaller).
        config: from :func:`finetune_config`.
        teacher: the unpruned model, needed when the config distils.

    Returns:
        A :class:`FinetuneReport`.
    """
    from edgeprune.recover import finetune

    if config.epochs <= 0:
        return FinetuneReport()
    log = finetune(model, config, teacher=teacher if config.distill is not None else None)
    return FinetuneReport(log.epochs, log.steps, log.seconds, config.distill is not None)
