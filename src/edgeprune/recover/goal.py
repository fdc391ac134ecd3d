"""Recovery that works to meet the accuracy guard instead of only checking it.

The configured fine-tuning (``Finetune.epochs``) runs first. If the pruned model is then still more
than ``max_drop`` points below the original, fine-tuning goes on one epoch at a time, each a short
cosine from half the peak learning rate (a warm restart at a lower peak), evaluated after every
epoch, until the drop is within the guard, ``patience`` epochs pass without a better score, or
``max_epochs`` epochs have run in all. The best weights seen are kept. The curve (accuracy after
each epoch) goes into the result so a report can draw it.

The evaluation that decides when to stop is the user's validation data, the same data the guard is
judged on: the stop is chosen on it, so the figure is slightly optimistic, as any early stopping on a
validation split is.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch.nn as nn

from edgeprune.recover.finetune import Finetune, FinetuneLog, finetune

DEFAULT_MAX_EPOCHS = 10
DEFAULT_PATIENCE = 3


@dataclass
class Recovery:
    """What :func:`recover_to_guard` did.

    Attributes:
        curve: ``(epochs so far, accuracy)`` after the configured fine-tuning and after each extra epoch.
        epochs: epochs fine-tuned in all.
        extra_epochs: epochs beyond the configured ones, spent to meet the guard.
        met: the drop is within ``max_drop`` at the end (``None`` without a guard).
        accuracy: the accuracy of the weights kept.
        logs: each fine-tuning call's log.
    """

    curve: list[tuple[float, float]] = field(default_factory=list)
    epochs: float = 0.0
    extra_epochs: int = 0
    met: bool | None = None
    accuracy: float | None = None
    logs: list[FinetuneLog] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(log.steps for log in self.logs)

    def to_dict(self) -> dict:
        return {"curve": [[round(e, 3), a] for e, a in self.curve], "epochs": self.epochs,
                "extra_epochs": self.extra_epochs, "met": self.met, "accuracy": self.accuracy}


def recover_to_guard(model: nn.Module, config: Finetune, evaluate: Callable[[nn.Module], float], baseline: float,
                     max_drop: float | None, *, teacher: nn.Module | None = None, max_epochs: int | None = None,
                     patience: int = DEFAULT_PATIENCE, skip_configured: bool = False) -> Recovery:
    """Fine-tune ``model`` in place until its accuracy is within ``max_drop`` of ``baseline`` (or give up).

    Args:
        model: the pruned model (changed in place; left with the best weights seen, in eval mode).
        config: the configured fine-tuning; its ``epochs`` run first.
        evaluate: ``evaluate(model) -> accuracy`` in points.
        baseline: the original model's accuracy.
        max_drop: the guard; ``None`` runs only the configured epochs.
        teacher: the unpruned model, for ``config.distill``.
        max_epochs: the cap on epochs in all (default ``max(10, config.epochs)``).
        patience: extra epochs without a better score before giving up.
        skip_configured: the configured epochs already ran (a strategy fine-tuned between its steps).

    Returns:
        A :class:`Recovery`.
    """
    out = Recovery()
    if not skip_configured and config.epochs > 0:
        out.logs.append(finetune(model, config, teacher))
        out.epochs += config.epochs
    accuracy = evaluate(model)
    out.curve.append((out.epochs, accuracy))
    cap = max(DEFAULT_MAX_EPOCHS, config.epochs) if max_epochs is None else max_epochs
    if max_drop is not None:
        best, best_state, stale = accuracy, copy.deepcopy(model.state_dict()), 0
        extra = replace(config, epochs=1, lr=config.lr / 2, val_loader=None, patience=None)
        while baseline - best > max_drop and out.epochs + 1 <= cap and stale < patience:
            out.logs.append(finetune(model, replace(extra, seed=config.seed + out.extra_epochs + 1), teacher))
            out.epochs += 1
            out.extra_epochs += 1
            accuracy = evaluate(model)
            out.curve.append((out.epochs, accuracy))
            if accuracy > best:
                best, best_state, stale = accuracy, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
        model.load_state_dict(best_state)
        accuracy = best
        out.met = baseline - best <= max_drop + 1e-9
    model.eval()
    out.accuracy = accuracy
    return out
