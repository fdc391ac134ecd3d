"""Coverage: torchvision classifiers prune at 0.3 and 0.5, run, keep their output shape, lose at
least 15% of their MACs, and export to ONNX that agrees with PyTorch on ONNX Runtime.

The default run covers one model per torchvision family; ``-m slow`` runs every classifier, and
``benchmarks/torchvision_coverage.py`` prints the full table (docs/coverage.md).
"""
from __future__ import annotations

import pytest
import torch
import torchvision

import edgeprune as ep
from edgeprune.verify import verify_pruned

# One per family, small enough for the default run.
FAMILIES = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
            "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf",
            "regnet_y_400mf", "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t",
            "vgg11_bn", "vit_b_32", "wide_resnet50_2"]
ALL = torchvision.models.list_models(module=torchvision.models)


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A randomly initialised classifier (10 classes) and a small input it accepts."""
    kwargs = {"num_classes": 10}
    size = 64
    if name.startswith("vit_"):
        kwargs["image_size"] = 64 if name.endswith("_32") or name.endswith("_16") else 56
    if name.startswith("inception"):
        kwargs.update(aux_logits=False, init_weights=False)
        size = 80
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=False)
    if name.startswith(("maxvit", "swin")):
        size = 224 if name.startswith("maxvit") else 64
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, **kwargs).eval()
    return model, torch.randn(1, 3, size, size)


def check(name: str, ratio: float) -> None:
    model, x = build(name)
    result = ep.prune(model, x, ratio=ratio)
    report = verify_pruned(model, result.model, x, max_mac_ratio=0.85, exporter="torchscript")
    assert report.ok, f"{name} at {ratio}: {report.problems}"


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", FAMILIES)
def test_family_prunes_runs_and_exports(name, ratio):
    check(name, ratio)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", [n for n in ALL if n not in FAMILIES])
def test_every_classifier(name, ratio):
    check(name, ratio)
