"""Planning + apply time of edgeprune vs Torch-Pruning on torchvision resnet50 and vit_b_16.

Both prune 50% of the channels of every prunable group with L2 magnitude, the classifier
protected, starting from the same fresh copy of the model (the copy itself is not timed), at
224x224, batch 1. Each measurement is repeated and the median is reported; the ratio is
edgeprune's time over Torch-Pruning's (the target: at most 1.5).

    python benchmarks/engine_speed.py [--repeats 3] [--models resnet50,vit_b_16]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch_pruning as tp
import torchvision

import edgeprune as ep


def time_edgeprune(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.nn.Module]:
    start = time.perf_counter()
    result = ep.prune(model, x, ratio=0.5, criterion="l2", inplace=True)
    return time.perf_counter() - start, result.model


def time_torch_pruning(model: torch.nn.Module, x: torch.Tensor, head: torch.nn.Module) -> tuple[float, torch.nn.Module]:
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=0.5, ignored_layers=[head])
    pruner.step()
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="resnet50,vit_b_16")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<10} {'edgeprune s':>12} {'torch-pruning s':>16} {'ratio':>6}  params after (ours / TP)")
    for name in args.models.split(","):
        torch.manual_seed(0)
        base = torchvision.models.get_model(name).eval()
        head = base.fc if hasattr(base, "fc") else base.heads.head
        head_name = "fc" if hasattr(base, "fc") else "heads.head"
        x = torch.randn(1, 3, 224, 224)
        ours, theirs = [], []
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            m = copy.deepcopy(base)
            t, ours_model = time_edgeprune(m, x)
            ours.append(t)
            m = copy.deepcopy(base)
            t, tp_model = time_torch_pruning(m, x, m.get_submodule(head_name))
            theirs.append(t)
        a, b = statistics.median(ours), statistics.median(theirs)
        count = lambda mm: sum(p.numel() for p in mm.parameters()) / 1e6  # noqa: E731
        print(f"{name:<10} {a:>12.2f} {b:>16.2f} {a / b:>6.2f}  {count(ours_model):.1f}M / {count(tp_model):.1f}M")
        del head


if __name__ == "__main__":
    main()
