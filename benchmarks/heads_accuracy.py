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
Runtime latency (1 thread, batch 1, median), and the paired difference with Torch-Pruning.

    python benchmarks/heads_accuracy.py [--seeds 0 1 2] [--ratio 0.3] [--epochs 3]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
import torch_pruning as tp

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure.latency import ort_latency
from edgeprune.measure.macs import count_macs
from edgeprune.tasks import get_task, pretrained
from edgeprune.tasks.mnist_vit import Attention

METHODS = ("Torch-Pruning", "ours, heads whole", "ours")


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
    task = get_task("mnist-vit")
    x = task.example_input()
    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    dense_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            model = pretrained("mnist-vit", seed=seed)
            dense = {"acc": task.evaluate(model), "macs": count_macs(model, x).total,
                     "ms": ort_latency(ep.export_onnx(model, x, Path(tmp) / "dense.onnx"), (x,), {}, threads=1,
                                       runs=args.runs).median_ms}
            dense_rows.append(dense)
            pruned = {"Torch-Pruning": prune_torch_pruning(model, x, args.ratio)}
            budget = count_macs(pruned["Torch-Pruning"], x).total / dense["macs"] + 1e-6
            for label, heads in (("ours, heads whole", False), ("ours", True)):
                pruned[label] = ep.prune(model, x, budget=Budget(macs=budget), criterion="l2",
                                         ignore=() if heads else ["*.attn.qkv"]).model
            for label, m in pruned.items():
                task.train(m, epochs=args.epochs, lr=task.recipe.lr / 10, seed=seed)
                m.eval()
                path = ep.export_onnx(m, x, Path(tmp) / f"{label.replace(' ', '_').replace(',', '')}.onnx")
                rows[label].append({"acc": task.evaluate(m), "macs": count_macs(m, x).total,
                                    "ms": ort_latency(path, (x,), {}, threads=1, runs=args.runs).median_ms,
                                    "heads": [b.attn.num_heads for b in m.blocks]})
                r = rows[label][-1]
                print(f"seed {seed} {label:<18} acc {r['acc']:.2f} (dense {dense['acc']:.2f})  "
                      f"MACs {r['macs'] / dense['macs']:.3f}x  {dense['ms'] / r['ms']:.2f}x faster  heads {r['heads']}",
                      flush=True)

    def spread(values):
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"

    print(f"\n{len(args.seeds)} seeds, TP ratio {args.ratio}, {args.epochs} epochs of fine-tuning, ONNX Runtime 1 thread")
    print(f"{'method':<18} {'accuracy %':>14} {'drop':>6} {'MACs x':>7} {'speed-up':>9} {'vs TP (paired)':>16}")
    print(f"{'dense':<18} {spread([d['acc'] for d in dense_rows]):>14}")
    for label in METHODS:
        acc = [r["acc"] for r in rows[label]]
        drop = statistics.mean(d["acc"] - a for d, a in zip(dense_rows, acc))
        macs = statistics.mean(r["macs"] / d["macs"] for r, d in zip(rows[label], dense_rows))
        speed = statistics.mean(d["ms"] / r["ms"] for r, d in zip(rows[label], dense_rows))
        paired = [a - t["acc"] for a, t in zip(acc, rows["Torch-Pruning"])]
        print(f"{label:<18} {spread(acc):>14} {drop:>6.2f} {macs:>7.3f} {speed:>8.2f}x {spread(paired):>16}")


if __name__ == "__main__":
    main()
