"""``mnist1d``: a 1D CNN on MNIST-1D, generated locally by the ``mnist1d`` package (no download).

The head flattens the last feature map into a linear layer, so each channel of the last conv
owns ``length`` consecutive input features of the classifier. Shapes, for (B, 1, 40)::

    conv1  conv1d k5 1->32, BN, ReLU        (B, 32, 40)
    conv2  conv1d k3 32->64, s2, BN, ReLU   (B, 64, 20)
    conv3  conv1d k3 64->64, BN, ReLU       (B, 64, 20)
    conv4  conv1d k3 64->64, s2, BN, ReLU   (B, 64, 10)
    head   flatten, linear 640->10          (B, 10)
"""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from torch import Tensor, nn

from ._data import to_splits
from ._task import Recipe, Splits, Task

NUM_SAMPLES = 10_000  # twice the package default: 8,000 train / 2,000 val
DATA_SEED = 42  # the package's default seed


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


class Mnist1dCNN(nn.Module):
    """The ``mnist1d`` task's classifier (see the module docstring for shapes)."""

    def __init__(self, length: int = 40, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 32, 5),
            _conv_bn(32, 64, 3, stride=2),
            _conv_bn(64, 64, 3),
            _conv_bn(64, 64, 3, stride=2),
        )
        self.classifier = nn.Linear(64 * (length // 4), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))  # (B, 64, L/4) -> (B, 64*L/4)


@lru_cache(maxsize=1)
def load_data() -> Splits:
    """MNIST-1D with the package's default transforms and ``NUM_SAMPLES`` samples, split 80/20 by the package."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = NUM_SAMPLES
    args.seed = DATA_SEED
    # make_dataset seeds the global `random` and numpy RNGs; keep the caller's states.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return to_splits(data["x"][:, None, :], data["y"], data["x_test"][:, None, :], data["y_test"])  # (N, 1, 40)


TASK = Task(
    name="mnist1d",
    description="1D CNN with a flatten+linear head on MNIST-1D (10,000 samples generated locally, 8,000/2,000)",
    model_factory=Mnist1dCNN,
    input_shape=(1, 40),
    num_classes=10,
    data=load_data,
    recipe=Recipe(epochs=20, lr=3e-3, batch_size=128, weight_decay=1e-4),
    version="1",
)
