"""``Pruner``: the prune path with estimator manners (construct, ``fit``, ``transform``).

The constructor only stores what to do; ``fit`` finds the plans (and recovers the weights, when
given fine-tuning) and keeps what it learned in attributes ending in ``_``; ``transform`` replays
that on a model. ``Pruner(...).fit(m, x).transform(m)`` gives what ``edgeprune.prune(m, x, ...)``
gives, because ``fit`` *is* that call.

Example:
    >>> import torch, torchvision
    >>> from edgeprune import Budget, Pruner
    >>> m, x = torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)
    >>> pruner = Pruner(kind="channels", criterion="l2", strategy="global", budget=Budget(macs=0.5)).fit(m, x)
    >>> small = pruner.transform(m)
    >>> len(pruner.plans_), pruner.report_["macs_after"] <= 0.5 * pruner.report_["macs_before"]
    (1, True)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from edgeprune.api import prune
from edgeprune.budget import Budget
from edgeprune.kinds import Kind, make_kind
from edgeprune.plan import Plan
from edgeprune.recover import Finetune
from edgeprune.surgery import apply_plan


class Pruner:
    """Prune with a fixed configuration, learned once and replayed.

    Args:
        kind: ``"channels"``, ``"blocks"``, ``"weights"``, ``"2:4"``..., or a kind config
            (``edgeprune.kinds.Channels(...)``).
        budget: a ``Budget`` (or its terms: ``"macs=0.5"`` or a list of them).
        ratio: a fraction to remove instead of a budget.
        finetune: recovery after the cut (``Finetune(train_loader, epochs, ...)``).
        max_epochs: the cap on fine-tuning epochs spent to meet ``budget.max_drop``.
        seed: for random choices.
        **options: the kind's options (``criterion``, ``strategy``, ``round_to``, ...; see ``edgeprune.prune``).

    Attributes (after ``fit``):
        plans_: the plans, oldest first.
        weights_: the state dict ``fit`` left (recovered weights), or ``None`` when only cut.
        report_: the prune's statistics (``PruneResult.stats``).
        skipped_: group -> why it was kept whole.
        result_: the whole ``PruneResult`` of ``fit``.
    """

    def __init__(self, kind: str | Kind = "channels", *, budget: Budget | str | list[str] | None = None,
                 ratio: float | None = None, finetune: Finetune | None = None, max_epochs: int | None = None,
                 seed: int = 0, **options: Any) -> None:
        self.kind = kind
        self.budget = budget
        self.ratio = ratio
        self.finetune = finetune
        self.max_epochs = max_epochs
        self.seed = seed
        self.options = options

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's convention)."""
        return {"kind": self.kind, "budget": self.budget, "ratio": self.ratio, "finetune": self.finetune,
                "max_epochs": self.max_epochs, "seed": self.seed, **self.options}

    def fit(self, model: nn.Module, example_inputs: Any = None, data: Iterable | None = None,
            evaluate: Callable[[nn.Module], float] | None = None) -> Pruner:
        """Find the plans for ``model`` (which is not changed) and recover the weights if configured.

        Args:
            model: the trained model.
            example_inputs: its example input (weight kinds may leave it out).
            data: batches of ``(inputs, targets)`` for data-driven criteria and scoring.
            evaluate: ``evaluate(model) -> accuracy`` in points, for strategies that measure and the guard.

        Returns:
            ``self``.
        """
        make_kind(self.kind, self.options)  # a bad option is refused before any work
        budget = Budget.parse(self.budget) if isinstance(self.budget, (str, list, tuple)) else self.budget
        result = prune(model, example_inputs, self.ratio, budget=budget, kind=self.kind, data=data,
                       evaluate=evaluate, finetune=self.finetune, max_epochs=self.max_epochs, seed=self.seed,
                       **self.options)
        self.result_ = result
        self.plans_: list[Plan] = list(result.plans)
        self.report_ = dict(result.stats)
        self.skipped_ = dict(result.skipped)
        recovered = self.finetune is not None or _changed_weights(model, result.model, self.plans_)
        self.weights_ = {k: v.detach().clone() for k, v in result.model.state_dict().items()} if recovered else None
        return self

    def transform(self, model: nn.Module) -> nn.Module:
        """The pruned model: ``fit``'s plans replayed on a copy of ``model``, with the weights ``fit`` recovered.

        Raises:
            RuntimeError: ``fit`` has not run.
            PlanError: ``model`` is not the architecture the plans were made for.
        """
        if not hasattr(self, "plans_"):
            raise RuntimeError("this Pruner is not fitted yet: call fit(model, example_inputs) first")
        pruned = apply_plan(model, self.plans_)
        if self.weights_ is not None:
            pruned.load_state_dict(self.weights_)
        return pruned.eval() if not self.result_.model.training else pruned

    def fit_transform(self, model: nn.Module, example_inputs: Any = None, **fit_args: Any) -> nn.Module:
        return self.fit(model, example_inputs, **fit_args).transform(model)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v is not None)
        return f"Pruner({args})"


def _changed_weights(original: nn.Module, pruned: nn.Module, plans: list[Plan]) -> bool:
    """Whether ``pruned`` holds weights other than the plans' slices of ``original`` (BatchNorm
    recalibration, a strategy's fine-tuning): then ``transform`` must load them."""
    replayed = apply_plan(original, plans).state_dict()
    now = pruned.state_dict()
    return replayed.keys() != now.keys() or any(not torch.equal(replayed[k], now[k]) for k in now)
