"""Coverage: torchvision classifiers prune at 0.3 and 0.5, run, keep their output shape, lose at
least 15% of their MACs, and export to ONNX that agrees with PyTorch on ONNX Runtime.

The default run covers one model per torchvision family at 0.5; ``-m slow`` runs them at 0.3 and
every other classifier at both, and ``benchmarks/torchvision_coverage.py`` prints the full table
(docs/coverage.md).
"""
from __future__ import annotations

import pytest
import torchvision

from benchmarks import torchvision_coverage

# One light model per family for the default run. The heavy members (alexnet, vgg, vit, maxvit,
# wide_resnet, the large convnext/regnet/efficientnet variants) run under ``-m slow`` and in the benchmark.
# densenet121 (11 s) and resnext50_32x4d (5 s) moved to ``-m slow`` and the benchmark to keep the default
# run under 5 minutes: concatenation stays covered by googlenet / squeezenet / shufflenet, grouped convs by regnet.
FAMILIES = ["convnext_tiny", "efficientnet_b0", "googlenet", "mnasnet0_5",
            "mobilenet_v2", "mobilenet_v3_small", "regnet_y_400mf", "resnet18",
            "shufflenet_v2_x0_5", "squeezenet1_1"]
# swin_t (~60 s of the default run for its two ratios) runs under ``-m slow`` with the other heavy
# members and in benchmarks/torchvision_coverage.py; its windowed heads keep a default-run case in
# tests/test_heads.py (a timm Swin with dead heads pruned).
ALL = torchvision.models.list_models(module=torchvision.models)


def check(name: str, ratio: float) -> None:
    result, report = torchvision_coverage.check(name, ratio)
    assert report.ok, f"{name} at {ratio}: {report.problems}"


@pytest.mark.parametrize("ratio", [pytest.param(0.3, marks=pytest.mark.slow), 0.5])
@pytest.mark.parametrize("name", FAMILIES)
def test_family_prunes_runs_and_exports(name, ratio):
    check(name, ratio)


@pytest.mark.slow
@pytest.mark.timeout(900)  # full-size classifiers, some far heavier than the default run's models
@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", [n for n in ALL if n not in FAMILIES])
def test_every_classifier(name, ratio):
    check(name, ratio)
