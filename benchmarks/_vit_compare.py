"""Shared by the mnist-vit benchmarks: prune each seed's trained ViT several ways, fine-tune each
alike, measure accuracy, MACs and ONNX Runtime latency, and print the paired summary."""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Callable

import torch.nn as nn

import edgeprune as ep
from edgeprune.measure.latency import ort_latency
from edgeprune.measure.macs import count_macs
from edgeprune.tasks import get_task, pretrained

# (trained model, example input, seed) -> {label: pruned model}; labels in the order to print
Pruners = Callable[[nn.Module, object, int], dict[str, nn.Module]]


def compare(prune_all: Pruners, *, seeds: list[int], epochs: int, runs: int, reference: str, title: str) -> None:
    """Run ``prune_all`` on the ``mnist-vit`` model of every seed and print per-seed and summary rows.

    Every pruned model is fine-tuned ``epochs`` at the recipe lr / 10 (same data order), exported
    with ``edgeprune.export_onnx`` (checked) and timed on ONNX Runtime, 1 thread, median of ``runs``.
    The summary's last column is each method's accuracy minus ``reference``'s, paired by seed.
    """
    task = get_task("mnist-vit")
    x = task.example_input()
    rows: dict[str, list[dict]] = {}
    dense_rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        def measure(m: nn.Module, label: str) -> dict:
            path = ep.export_onnx(m, x, Path(tmp) / f"{label.replace(' ', '_').replace(',', '')}.onnx")
            return {"acc": task.evaluate(m), "macs": count_macs(m, x).total,
                    "ms": ort_latency(path, (x,), {}, threads=1, runs=runs).median_ms}

        for seed in seeds:
            model = pretrained("mnist-vit", seed=seed)
            dense = measure(model, "dense")
            dense_rows.append(dense)
            for label, m in prune_all(model, x, seed).items():
                task.train(m, epochs=epochs, lr=task.recipe.lr / 10, seed=seed)
                r = measure(m.eval(), label)
                rows.setdefault(label, []).append(r)
                print(f"seed {seed} {label:<19} acc {r['acc']:.2f} (dense {dense['acc']:.2f})  "
                      f"MACs {r['macs'] / dense['macs']:.3f}x  {dense['ms'] / r['ms']:.2f}x faster", flush=True)

    def spread(values: list[float]) -> str:
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"

    print(f"\n{len(seeds)} seeds, {title}, {epochs} epochs of fine-tuning, ONNX Runtime 1 thread")
    print(f"{'method':<19} {'accuracy %':>14} {'drop':>6} {'MACs x':>7} {'speed-up':>9} {'vs ' + reference:>20}")
    print(f"{'dense':<19} {spread([d['acc'] for d in dense_rows]):>14}")
    for label, got in rows.items():
        acc = [r["acc"] for r in got]
        drop = statistics.mean(d["acc"] - a for d, a in zip(dense_rows, acc))
        macs = statistics.mean(r["macs"] / d["macs"] for r, d in zip(got, dense_rows))
        speed = statistics.mean(d["ms"] / r["ms"] for r, d in zip(got, dense_rows))
        paired = [a - b["acc"] for a, b in zip(acc, rows[reference])]
        print(f"{label:<19} {spread(acc):>14} {drop:>6.2f} {macs:>7.3f} {speed:>8.2f}x {spread(paired):>20}")
