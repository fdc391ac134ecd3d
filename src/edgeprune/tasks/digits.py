"""``digits``: an MLP on scikit-learn's 8x8 handwritten digits (1,797 images).

Shapes: (B, 64) -> linear 64->128, ReLU -> linear 128->64, ReLU -> linear 64->10 -> (B, 10).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from torch import Tensor, nn

from ._data import stratified_split
from ._task import Recipe, Splits, Task


class DigitsMLP(nn.Module):
    """The ``digits`` task's classifier."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, int] = (128, 64), num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


@lru_cache(maxsize=1)
def load_data() -> Splits:
    """scikit-learn's digits scaled to [0, 1], flattened to 64 features, split 1,437 / 360 (stratified, seed 0)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # (1797, 64), pixel values 0..16
    return stratified_split(x, bunch.target, n_val=360, seed=0)


TASK = Task(
    name="digits",
    description="MLP 64-128-64-10 on scikit-learn's 8x8 digits (1,437/360 split)",
    model_factory=DigitsMLP,
    input_shape=(64,),
    num_classes=10,
    data=load_data,
    recipe=Recipe(epochs=40, lr=1e-2, batch_size=64, weight_decay=1e-4, threads=1),
    version="1",
)
