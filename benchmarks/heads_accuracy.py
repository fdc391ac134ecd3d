"""Attention heads on a trained transformer: accuracy and ONNX Runtime latency at equal MACs.

The ``mnist-vit`` task's ViT (4 blocks, 4 heads x 16, trained from scratch per seed on the
5,000-image MNIST subset) is pruned three ways, then each is fine-tuned alike (``--epochs`` at the
recipe lr / 10, the same data order):

* Torch-Pruning 1.6 with its ViT recipe at ``--ratio``: ``num_heads={qkv: heads}``,
  ``prune_num_heads=True``, ``prune_head_dims=False``, ``head_pruning_ratio=r``, attributes set by
  hand afterwards (its README's ViT example). Its MAC ratio is the budget of the two rows below;
* ours, heads whole: ``edgeprune.prune(model, x, budget=Budget(macs=<TP's ratio>),
  ignore=["*.attn.qkv"])`` (MLP hidden units and residual width only, as before heads were units);
* ours: the same with heads.

Prints, per method, the mean and spread over seeds of accuracy after fine-tuning, MACs and ONNX
Runtime latency (1 thread, batch 1, median), and the paired difference with Torch-Pruning
(``benchmarks/_vit_compare.py``).

    python benchmarks/heads_accuracy.py [--seeds 0 1 2] [--ratio 0.3] [--epochs 3]
"""
from __future__ import annotations

import argparse
import copy
import warnings

import torch
import torch_pruning as tp
from _vit_compare import compare

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure.macs import count_macs
from edgeprune.tasks.mnist_vit import Attention


def prune_torch_pruning(model: torch.nn.Module, x: torch.Tensor, ratio: float) -> torch.nn.Module:
    model = copy.deepcopy(model)
    attention = [m for m in model.modules() if isinstance(m, Attention)]
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=[model.head],
                                       num_heads={m.qkv: m.num_heads for m in attention},
                                       prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio)
    pruner.step()
    for m in attention:
        m.num_heads = pruner.num_heads[m.qkv]
        m.attn_dim = m.num_heads * m.head_dim
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    def prune_all(model, x, seed):
        pruned = {"Torch-Pruning": prune_torch_pruning(model, x, args.ratio)}
        budget = count_macs(pruned["Torch-Pruning"], x).total / count_macs(model, x).total + 1e-6  # equal MACs
        for label, heads in (("ours, heads whole", False), ("ours", True)):
            pruned[label] = ep.prune(model, x, budget=Budget(macs=budget), criterion="l2",
                                     ignore=() if heads else ["*.attn.qkv"]).model
        return pruned

    compare(prune_all, seeds=args.seeds, epochs=args.epochs, runs=args.runs, reference="Torch-Pruning",
            title=f"Torch-Pruning ratio {args.ratio}")


if __name__ == "__main__":
    main()
