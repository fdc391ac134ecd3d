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
import statistics
import tempfile
import warnings
from pathlib import Path

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure.latency import ort_latency
from edgeprune.measure.macs import count_macs
from edgeprune.tasks import get_task, pretrained

METHODS = ("depth", "width, heads whole", "width")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--macs", type=float, default=0.6)
    parser.add_argument("--epochs", type=int, default=10)
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
            train, _ = task.loaders(seed=seed)
            dense = {"acc": task.evaluate(model), "macs": count_macs(model, x).total,
                     "ms": ort_latency(ep.export_onnx(model, x, Path(tmp) / "dense.onnx"), (x,), {}, threads=1,
                                       runs=args.runs).median_ms}
            dense_rows.append(dense)
            pruned = {"depth": ep.prune(model, x, kind="blocks", budget=Budget(macs=args.macs), data=train).model}
            reached = count_macs(pruned["depth"], x).total / dense["macs"] + 1e-6
            pruned["width, heads whole"] = ep.prune(model, x, budget=Budget(macs=reached), ignore=["*.attn.qkv"]).model
            pruned["width"] = ep.prune(model, x, budget=Budget(macs=reached)).model
            for label, m in pruned.items():
                task.train(m, epochs=args.epochs, lr=task.recipe.lr / 10, seed=seed)
                m.eval()
                path = ep.export_onnx(m, x, Path(tmp) / f"{label.replace(' ', '_').replace(',', '')}.onnx")
                rows[label].append({"acc": task.evaluate(m), "macs": count_macs(m, x).total,
                                    "ms": ort_latency(path, (x,), {}, threads=1, runs=args.runs).median_ms})
                r = rows[label][-1]
                print(f"seed {seed} {label:<19} acc {r['acc']:.2f} (dense {dense['acc']:.2f})  "
                      f"MACs {r['macs'] / dense['macs']:.3f}x  {dense['ms'] / r['ms']:.2f}x faster", flush=True)

    def spread(values):
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"

    print(f"\n{len(args.seeds)} seeds, MACs <= {args.macs}, {args.epochs} epochs of fine-tuning, ONNX Runtime 1 thread")
    print(f"{'method':<19} {'accuracy %':>14} {'drop':>6} {'MACs x':>7} {'speed-up':>9} {'vs depth (paired)':>18}")
    print(f"{'dense':<19} {spread([d['acc'] for d in dense_rows]):>14}")
    for label in METHODS:
        acc = [r["acc"] for r in rows[label]]
        drop = statistics.mean(d["acc"] - a for d, a in zip(dense_rows, acc))
        macs = statistics.mean(r["macs"] / d["macs"] for r, d in zip(rows[label], dense_rows))
        speed = statistics.mean(d["ms"] / r["ms"] for r, d in zip(rows[label], dense_rows))
        paired = [a - b["acc"] for a, b in zip(acc, rows["depth"])]
        print(f"{label:<19} {spread(acc):>14} {drop:>6.2f} {macs:>7.3f} {speed:>8.2f}x {spread(paired):>18}")


if __name__ == "__main__":
    main()
