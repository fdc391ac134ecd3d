"""``verify_pruned`` leaves both models as it found them: every module's train/eval flag."""
from __future__ import annotations

import torch
import torch.nn as nn

import edgeprune as ep


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _flags(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def test_verify_restores_every_modules_flag_and_checks_in_eval_mode():
    torch.manual_seed(0)
    original = _net()
    x = torch.randn(2, 3, 12, 12)
    pruned = ep.prune(original, x, ratio=0.5).model
    original.train()
    original[1].eval()  # a frozen BatchNorm inside a training model
    pruned.eval()
    pruned[3].train()  # and a Dropout left on in an eval model
    before = (_flags(original), _flags(pruned))
    stats = original[1].running_mean.clone()

    report = ep.verify_pruned(original, pruned, x, onnx=False)

    assert report.ok, report.problems
    assert (_flags(original), _flags(pruned)) == before
    assert torch.equal(original[1].running_mean, stats)  # it ran in eval mode: no statistics updated
