"""The :class:`Task` type: a model, its data, and how to train and score it."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ._loop import LossFn, TrainLog, evaluate, train


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` intra-op threads inside the block and restore the caller's setting after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Splits:
    """A task's data as tensors: inputs (N, *input_shape) float32, targets (N,) int64."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor


@dataclass(frozen=True)
class Recipe:
    """How :func:`edgeprune.tasks.pretrained` trains a task's model from scratch."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    threads: int | None = None  # torch intra-op threads while training (tiny models train faster on 1); restored after


@dataclass(frozen=True)
class Task:
    """A built-in model with its data.

    Attributes:
        name: registry key, e.g. ``"mnist"``.
        description: one line for listings.
        model_factory: builds an untrained model (uses torch's global RNG for initialisation).
        input_shape: one sample's shape, without the batch dimension, e.g. ``(1, 28, 28)``.
        num_classes: number of output logits.
        data: returns the train/val tensors; the split is fixed (seeded) and cached per process.
        recipe: how the model is trained from scratch.
        version: changes whenever the model, data or recipe change, so cached weights are retrained.

    Example:
        >>> from edgeprune.tasks import get_task
        >>> task = get_task("digits")
        >>> task.build(seed=0)(task.example_input()).shape
        torch.Size([1, 10])
    """

    name: str
    description: str
    model_factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    data: Callable[[], Splits]
    recipe: Recipe
    version: str
    # A task whose model ships trained (``pretrained`` returns it, no training, no cache), whose
    # targets are not class labels, or whose score is not top-1 accuracy sets these:
    trained_model: Callable[[], nn.Module] | None = None
    score: Callable[[nn.Module, DataLoader], float] | None = None  # higher is better, in points
    metric: str = "top-1 accuracy"
    loss_fn: LossFn | None = None  # fine-tuning loss ``(model, inputs, targets)``; cross-entropy by default
    figures: Callable[[nn.Module, DataLoader], dict[str, float]] | None = None  # more figures for the report

    def build(self, seed: int | None = None) -> nn.Module:
        """A fresh untrained model; ``seed`` makes its initialisation reproducible without
        touching the caller's RNG state."""
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = self.model_factory()
        return model.eval()

    def example_input(self, batch_size: int = 1) -> Tensor:
        """The first ``batch_size`` validation inputs, shape ``(batch_size, *input_shape)``."""
        return self.data().x_val[:batch_size].clone()

    def loaders(self, batch_size: int | None = None, seed: int = 0) -> tuple[DataLoader, DataLoader]:
        """``(train_loader, val_loader)``; the train loader reshuffles each epoch in an order fixed by ``seed``.

        Args:
            batch_size: defaults to the recipe's batch size; the val loader uses 4x as much.
            seed: seeds the train loader's own generator (the global RNG is not used).
        """
        splits = self.data()
        batch_size = batch_size or self.recipe.batch_size
        generator = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(TensorDataset(splits.x_train, splits.y_train), batch_size=batch_size,
                                  shuffle=True, generator=generator)
        val_loader = DataLoader(TensorDataset(splits.x_val, splits.y_val), batch_size=batch_size * 4)
        return train_loader, val_loader

    def evaluate(self, model: nn.Module, loader: DataLoader | None = None) -> float:
        """The task's score on ``loader`` (default: the validation split): top-1 accuracy in percent
        unless the task defines its own ``score``."""
        loader = loader if loader is not None else self.loaders()[1]
        return float(self.score(model, loader)) if self.score is not None else evaluate(model, loader)

    def train(
        self,
        model: nn.Module,
        epochs: int | None = None,
        lr: float | None = None,
        *,
        seed: int = 0,
        batch_size: int | None = None,
        weight_decay: float | None = None,
        loss_fn: LossFn | None = None,
        max_steps: int | None = None,
    ) -> TrainLog:
        """Train ``model`` in place on this task's training split (the recipe fills what is not given).

        For recovery after pruning pass a few ``epochs`` and a smaller ``lr`` (e.g. recipe lr / 10).
        """
        train_loader, _ = self.loaders(batch_size, seed=seed)
        with _torch_threads(self.recipe.threads):
            return train(
                model,
                train_loader,
                epochs=epochs if epochs is not None else self.recipe.epochs,
                lr=lr if lr is not None else self.recipe.lr,
                weight_decay=weight_decay if weight_decay is not None else self.recipe.weight_decay,
                seed=seed,
                loss_fn=loss_fn if loss_fn is not None else self.loss_fn,
                max_steps=max_steps,
            )
