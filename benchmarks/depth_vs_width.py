"""Depth or width? Dropping residual blocks against cutting channels/heads, at equal MACs.

The ``mnist-vit`` task's ViT (4 blocks, trained from scratch per seed) is pruned three ways, then
each is fine-tuned alike (``--epochs`` at the recipe lr / 10, the same data order):

* depth: ``edgeprune.prune(model, x, kind="blocks", budget=Budget(macs=--macs))``, the fewest
  residual blocks with the least Block Influence (scored on 8 training batches);
* width, heads whole: ``edgeprune.prune(model, x, budget=Budget(macs=<depth's ratio>),
  ignore=["*.attn.qkv"])``: MLP hidden units and residual width at the MACs depth reached;
* width: the same with heads.

Prints per method the mean and spread over seeds of accuracy after fine-tuning, MACs, and ONNX
Runtime latency (1 thread, batch 1, median), and each width row's paired difference with depth.

    python benchmarks/depth_vs_width.py [--seeds 0 1 2 3 4] [--macs 0.6] [--epochs 10]
"""
from __future__ import annotations

import argparse
import warnings

from _vit_compare import compare

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure.macs import count_macs
from edgeprune.tasks import get_task

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--macs", type=float, default=0.6)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    task = get_task("mnist-vit")

    def prune_all(model, x, seed):
        train, _ = task.loaders(seed=seed)
        pruned = {"depth": ep.prune(model, x, kind="blocks", budget=Budget(macs=args.macs), data=train).model}
        reached = count_macs(pruned["depth"], x).total / count_macs(model, x).total + 1e-6  # equal MACs
        pruned["width, heads whole"] = ep.prune(model, x, budget=Budget(macs=reached), ignore=["*.attn.qkv"]).model
        pruned["width"] = ep.prune(model, x, budget=Budget(macs=reached)).model
        return pruned

    compare(prune_all, seeds=args.seeds, epochs=args.epochs, runs=args.runs, reference="depth",
            title=f"MACs <= {args.macs}")


if __name__ == "__main__":
    main()
