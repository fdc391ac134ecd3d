"""Coverage over every torchvision classifier: prune at 0.3 and 0.5, then check that the model runs,
keeps its output shape, lost >= 15% of its MACs, and exports to ONNX that agrees with PyTorch
(every element within 1e-3 of the output's largest magnitude) on ONNX Runtime.

    python benchmarks/torchvision_coverage.py [--models resnet18,vit_b_16] [--ratios 0.3,0.5]

Prints one row per model and ratio, then the pass rate. The default test run covers one model
per family (tests/test_coverage_torchvision.py); ``pytest -m slow`` runs the rest.
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision

import edgeprune as ep
from edgeprune.verify import verify_pruned


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A randomly initialised classifier (10 classes) and a small input it accepts."""
    kwargs: dict = {"num_classes": 10}
    size = 64
    if name.startswith("vit_"):
        kwargs["image_size"] = size = 64 if name.endswith(("_16", "_32")) else 56  # a multiple of the patch
    if name.startswith(("inception", "googlenet")):
        kwargs.update(aux_logits=False, init_weights=False)
        size = 80 if name.startswith("inception") else size
    if name.startswith(("maxvit", "swin")):
        size = 224  # windowed attention pads small inputs up to the window: 224 is the realistic case
    torch.manual_seed(0)
    return torchvision.models.get_model(name, **kwargs).eval(), torch.randn(1, 3, size, size)


def check(name: str, ratio: float, exporter: str = "torchscript"):
    """Prune ``name`` at ``ratio`` and verify it; TorchScript export is the fast one for the test run."""
    model, x = build(name)
    result = ep.prune(model, x, ratio=ratio)
    return result, verify_pruned(model, result.model, x, max_mac_ratio=0.85, exporter=exporter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(torchvision.models.list_models(module=torchvision.models)))
    parser.add_argument("--ratios", default="0.3,0.5")
    parser.add_argument("--exporter", default="auto", help="auto (dynamo, TorchScript fallback), dynamo, torchscript")
    args = parser.parse_args()
    rows, passed = 0, 0
    print(f"{'model':<22} {'ratio':>5} {'MACs after':>10} {'groups':>6} {'kept':>5} {'secs':>6}  result")
    for name in args.models.split(","):
        for ratio in (float(r) for r in args.ratios.split(",")):
            rows += 1
            start = time.perf_counter()
            try:
                result, report = check(name, ratio, args.exporter)
            except Exception as exc:  # a refusal is a result to print, not a crash of the table
                print(f"{name:<22} {ratio:>5} {'-':>10} {'-':>6} {'-':>5} {time.perf_counter() - start:>6.1f}  "
                      f"FAIL {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            passed += report.ok
            verdict = "pass" if report.ok else "FAIL " + "; ".join(report.problems)[:160]
            print(f"{name:<22} {ratio:>5} {report.mac_ratio:>10.2f} {result.stats['groups']:>6} "
                  f"{result.stats['skipped_groups']:>5} {time.perf_counter() - start:>6.1f}  {verdict}", flush=True)
    print(f"\npassed {passed}/{rows} ({100 * passed / max(rows, 1):.1f}%)")


if __name__ == "__main__":
    main()
