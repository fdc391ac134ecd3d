"""Small models of the microcontroller kind for the TFLM arena tests (1-d CNNs, residual, depthwise, 2-d)."""
from __future__ import annotations

import torch
import torch.nn as nn


class Res1d(nn.Module):
    """Two residual blocks of 1-d convolutions (the second after a strided downsample)."""

    def __init__(self, c: int = 3, w: int = 24, n: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(c, w, 5, padding=2), nn.BatchNorm1d(w), nn.ReLU())
        self.a = nn.Sequential(nn.Conv1d(w, w, 3, padding=1), nn.BatchNorm1d(w), nn.ReLU(),
                               nn.Conv1d(w, w, 3, padding=1), nn.BatchNorm1d(w))
        self.down = nn.Sequential(nn.Conv1d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm1d(2 * w), nn.ReLU())
        self.b = nn.Sequential(nn.Conv1d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm1d(2 * w))
        self.head = nn.Linear(2 * w, n)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.a(x))
        x = self.down(x)
        x = torch.relu(x + self.b(x))
        return self.head(x.mean(-1))


def cnn1d(c: int = 3, n: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv1d(c, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
                         nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
                         nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(32, n))


def cnn1d_flat(c: int = 1, n: int = 10, length: int = 64) -> nn.Module:
    return nn.Sequential(nn.Conv1d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * length // 2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, n))


def dw1d(c: int = 3, n: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(c, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU6(),
        nn.Conv1d(32, 32, 3, padding=1, groups=32), nn.BatchNorm1d(32), nn.ReLU6(),
        nn.Conv1d(32, 64, 1), nn.BatchNorm1d(64), nn.ReLU6(),
        nn.Conv1d(64, 64, 3, stride=2, padding=1, groups=64), nn.BatchNorm1d(64), nn.ReLU6(),
        nn.Conv1d(64, 48, 1), nn.BatchNorm1d(48), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(48, n))


def cnn2d(n: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, n))


MODELS = {"cnn1d": (cnn1d, (1, 3, 128)), "cnn1d_flat": (cnn1d_flat, (1, 1, 64)), "res1d": (Res1d, (1, 3, 128)),
          "dw1d": (dw1d, (1, 3, 128)), "cnn2d": (cnn2d, (1, 1, 28, 28))}


def make(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model ``name`` with seeded weights and non-trivial BatchNorm statistics, and its input."""
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = factory().eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model, torch.randn(*shape, generator=g)
