"""Structured pruning strategies at equal MACs, with the same fine-tuning budget, against Torch-Pruning.

On the built-in tasks ``mnist`` (residual CNN, 5,000-image MNIST subset) and ``mnist1d`` (1D CNN
with a flatten head), at 2x and 4x fewer MACs, every method gets the same fine-tuning: ``epochs``
passes of AdamW (cosine decay from ``lr``) over the task's training split
(``edgeprune.recover.finetune``). Methods:

* ``uniform-l1``  one-shot, the same fraction of every group, filters ranked by L1 norm (Li et al. 2017)
* ``global-l2``   one-shot, one ranking over all groups (group L2 norm, per-group normalised)
* ``sensitivity`` per-group scan on 512 training samples, greedy allocation under the MAC budget
* ``sensitivity-loss`` the same, the scan measuring the mean cross-entropy on those samples instead
                  of their accuracy (which sits near 100% on training samples for small cuts)
* ``iterative-kd`` 3 steps on Zhu & Gupta's cubic schedule, global L2, fine-tuning split over the
                  steps, distillation from the unpruned model (T=4, alpha=0.7)
* ``uniform-<criterion>`` controls, not in the default run (``--methods``): one-shot uniform with
                  the ``l2``, ``taylor``, ``taylor-squared``, ``fisher``, ``bn`` or ``random`` criterion, the same widths
                  as ``uniform-l1``; where they all tie, the criterion does not decide the cell
* ``torch-pruning`` tp.pruner.MetaPruner, MagnitudeImportance(p=2), uniform per layer, classifier
                  ignored; its pruning ratio found by bisection to meet the same MAC target

Our strategies re-estimate BatchNorm statistics on 512 training samples after each cut (and use
them for the sensitivity scan); every method is fine-tuned by the same function. Accuracy is on
the task's validation split (never used for any choice), MACs by ``edgeprune.measure.count_macs``,
latency on ONNX Runtime (1 thread, batch 1, median of ``latency_runs``) by ``edgeprune.measure``.

    .venv/bin/python benchmarks/strategies.py            # 3 seeds, both tasks (about an hour on 2 busy cores)
    .venv/bin/python benchmarks/strategies.py --quick    # 1 seed, mnist1d, 1 epoch: a smoke test

Every method is also compared with Torch-Pruning seed by seed (same unpruned model, same
fine-tuning data order): the mean difference, its standard error and the seeds won/tied/lost.

Results go to ``--out`` (default ``runs/strategies``): ``runs.jsonl`` (one line per run, written as
it finishes), ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure import count_macs, count_params
from edgeprune.measure.profile import profile
from edgeprune.recover import Distill, Finetune, finetune
from edgeprune.strategies import Iterative, OneShot, Sensitivity
from edgeprune.tasks import get_task, pretrained

METHODS = ("uniform-l1", "global-l2", "sensitivity", "iterative-kd", "sensitivity-kd", "sensitivity-loss",
           "sensitivity-loss-kd", "torch-pruning")
# Controls (not in the default run): one-shot uniform with other criteria, down to a random ranking.
# If they all land where uniform-l1 does, the criterion does not decide that cell's accuracy.
CONTROLS = ("uniform-l2", "uniform-taylor", "uniform-taylor-squared", "uniform-fisher", "uniform-bn", "uniform-random")
ALL_METHODS = METHODS[:-1] + CONTROLS + METHODS[-1:]


@dataclass(frozen=True)
class BenchConfig:
    tasks: tuple[str, ...] = ("mnist1d", "mnist")
    seeds: tuple[int, ...] = (0, 1, 2)
    targets: tuple[float, ...] = (0.5, 0.25)   # MACs kept: 2x and 4x fewer
    methods: tuple[str, ...] = METHODS
    epochs: int = 3
    lr: float = 3e-3
    calibration_samples: int = 512
    calibration_batch: int = 128
    iterative_steps: int = 3
    threads: int = 1
    latency_runs: int = 30
    latency: bool = True  # False: accuracy only (no ONNX Runtime timing, so no timing lock needed)


def calibration(task, cfg: BenchConfig) -> DataLoader:
    sp = task.data()
    n = cfg.calibration_samples
    return DataLoader(TensorDataset(sp.x_train[:n], sp.y_train[:n]), batch_size=cfg.calibration_batch)


def run_ours(method: str, model, task, cfg: BenchConfig, seed: int, keep: float):
    x = task.example_input()
    train_loader, _ = task.loaders(seed=seed)
    calib = calibration(task, cfg)
    distill = Distill(temperature=4.0, alpha=0.7) if method.endswith("-kd") else None
    ft = Finetune(train_loader, epochs=cfg.epochs, lr=cfg.lr, distill=distill, seed=seed)
    strategy, criterion = {
        "uniform-l1": (OneShot("uniform"), "l1-out"),
        **{f"uniform-{c}": (OneShot("uniform"), c) for c in ("l2", "taylor", "taylor-squared", "fisher", "bn", "random")},
        "global-l2": (OneShot("global"), "l2"),
        "sensitivity": (Sensitivity(), "l2"),
        "sensitivity-kd": (Sensitivity(), "l2"),
        "sensitivity-loss": (Sensitivity(signal="loss"), "l2"),
        "sensitivity-loss-kd": (Sensitivity(signal="loss"), "l2"),
        "iterative-kd": (Iterative(steps=cfg.iterative_steps, schedule="cubic", allocation="global"), "l2"),
    }[method]
    result = ep.prune(model, x, budget=Budget(macs=keep), strategy=strategy, criterion=criterion, data=calib,
                      evaluate=lambda m: task.evaluate(m, calib), finetune=ft, calibration_batches=None, seed=seed)
    cost = result.stats["cost"]
    return result.model, {"forward": cost["forward"], "backward": cost["backward"],
                          "teacher_forward": cost["teacher_forward"], "evaluations": cost["evaluations"]}


def run_torch_pruning(model, task, cfg: BenchConfig, seed: int, keep: float):
    import torch_pruning as tp

    x = task.example_input()
    base = count_macs(model, x).total
    head = model.classifier

    def pruned_at(ratio: float):
        m = copy.deepcopy(model)
        pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                      ignored_layers=[m.classifier], global_pruning=False)
        pruner.step()
        return m

    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):  # the smallest ratio that meets the target, as fit_ratio does for ours
        mid = (lo + hi) / 2
        m = pruned_at(mid)
        if count_macs(m, x).total <= keep * base:
            hi, best = mid, m
        else:
            lo = mid
    assert head is model.classifier
    train_loader, _ = task.loaders(seed=seed)
    log = finetune(best, Finetune(train_loader, epochs=cfg.epochs, lr=cfg.lr, seed=seed))
    return best, {"forward": log.forward, "backward": log.backward, "teacher_forward": 0, "evaluations": 0,
                  "ratio": hi}


def one_run(task_name: str, seed: int, keep: float, method: str, cfg: BenchConfig) -> dict:
    task = get_task(task_name)
    model = pretrained(task_name, seed)
    x = task.example_input()
    base_acc = task.evaluate(model)
    base_macs = count_macs(model, x).total
    start = time.perf_counter()
    if method == "torch-pruning":
        pruned, cost = run_torch_pruning(model, task, cfg, seed, keep)
    else:
        pruned, cost = run_ours(method, model, task, cfg, seed, keep)
    seconds = time.perf_counter() - start
    latency = base_latency = float("nan")
    if cfg.latency:
        latency = profile(pruned, x, threads=cfg.threads, runs=cfg.latency_runs, warmup=5, memory=False,
                          torch_latency_too=False).latency_onnx.median_ms
        base_latency = profile(model, x, threads=cfg.threads, runs=cfg.latency_runs, warmup=5, memory=False,
                               torch_latency_too=False).latency_onnx.median_ms
    acc = task.evaluate(pruned)
    return {"task": task_name, "seed": seed, "keep": keep, "method": method, "base_accuracy": base_acc,
            "accuracy": acc, "drop": base_acc - acc, "macs": count_macs(pruned, x).total, "base_macs": base_macs,
            "params": count_params(pruned).total, "latency_ms": latency,
            "base_latency_ms": base_latency, "seconds": seconds, **cost}


def paired_difference(runs: list[dict], rows: list[dict], reference: str = "torch-pruning") -> dict | None:
    """Accuracy minus the reference method's on the same task, budget and seed (the same unpruned
    model and fine-tuning data order): mean, its standard error, and wins / ties / losses."""
    ref = {(r["task"], r["keep"], r["seed"]): r["accuracy"] for r in rows if r["method"] == reference}
    diffs = [r["accuracy"] - ref[(r["task"], r["keep"], r["seed"])] for r in runs
             if (r["task"], r["keep"], r["seed"]) in ref]
    if not diffs or runs[0]["method"] == reference:
        return None
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return {"mean": statistics.mean(diffs), "se": se, "seeds": len(diffs), "wins": sum(d > 0 for d in diffs),
            "ties": sum(d == 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["task"], r["keep"], r["method"]) for r in rows},
                  key=lambda k: (k[0], -k[1], ALL_METHODS.index(k[2]) if k[2] in ALL_METHODS else 99))
    for task, keep, method in keys:
        rs = [r for r in rows if (r["task"], r["keep"], r["method"]) == (task, keep, method)]

        def mean_sd(field: str) -> tuple[float, float]:
            v = [float(r[field]) for r in rs]
            if any(x != x for x in v):  # NaN: not measured (--no-latency)
                return float("nan"), float("nan")
            return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

        out.append({"task": task, "speedup": round(1 / keep), "method": method, "seeds": len(rs),
                    "vs_torch_pruning": paired_difference(rs, rows),
                    "accuracy": mean_sd("accuracy"), "drop": mean_sd("drop"),
                    "macs_ratio": mean_sd("macs")[0] / mean_sd("base_macs")[0],
                    "latency_ms": mean_sd("latency_ms"), "base_latency_ms": mean_sd("base_latency_ms")[0],
                    "seconds": mean_sd("seconds"), "forward": mean_sd("forward")[0], "backward": mean_sd("backward")[0],
                    "teacher_forward": mean_sd("teacher_forward")[0], "evaluations": mean_sd("evaluations")[0]})
    return out


def markdown(summary: list[dict], cfg: BenchConfig) -> str:
    lines = [f"Fine-tuning for every method: {cfg.epochs} epochs, AdamW, lr {cfg.lr} cosine. "
             f"Mean ± sd over {len(cfg.seeds)} seed(s); drop = unpruned − pruned accuracy (points, val split); "
             f"latency: ONNX Runtime, {cfg.threads} thread, batch 1, median (noisy: shared machine). "
             "vs TP: accuracy minus Torch-Pruning's on the same seed, mean ± standard error, "
             "and the seeds won / tied / lost.", "",
             "| task | MACs | method | accuracy % | drop (pts) | vs TP, paired (W/T/L) | MACs kept | latency ms (unpruned) | seconds | fwd / bwd / teacher batches | evals |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        vs = s.get("vs_torch_pruning")
        paired = f"{vs['mean']:+.2f} ± {vs['se']:.2f} ({vs['wins']}/{vs['ties']}/{vs['losses']})" if vs else "-"
        lines.append(f"| {s['task']} | {s['speedup']}x fewer | {s['method']} | {s['accuracy'][0]:.2f} ± {s['accuracy'][1]:.2f} "
                     f"| {s['drop'][0]:.2f} ± {s['drop'][1]:.2f} | {paired} | {s['macs_ratio']:.3f} "
                     f"| {s['latency_ms'][0]:.3f} ({s['base_latency_ms']:.3f}) | {s['seconds'][0]:.0f} "
                     f"| {s['forward']:.0f} / {s['backward']:.0f} / {s['teacher_forward']:.0f} | {s['evaluations']:.0f} |")
    return "\n".join(lines + verdicts(summary)) + "\n"


MAX_DROP = {2: 0.2, 4: 0.5}  # the limits for our best method, in points, by MAC reduction


def verdicts(summary: list[dict]) -> list[str]:
    """Per task and budget: our best method by mean accuracy (controls left out), its drop against
    the limit, and its paired difference with Torch-Pruning."""
    lines = []
    for task, speedup in dict.fromkeys((s["task"], s["speedup"]) for s in summary):
        ours = [s for s in summary if (s["task"], s["speedup"]) == (task, speedup)
                and s["method"] in METHODS and s["vs_torch_pruning"] is not None]
        if not ours:
            continue
        best = max(ours, key=lambda s: s["accuracy"][0])
        vs, drop, limit = best["vs_torch_pruning"], best["drop"][0], MAX_DROP.get(speedup)
        drop_ok = "" if limit is None else f" ({'within' if drop <= limit else 'over'} {limit})"
        lines.append(f"- {task} {speedup}x: best of ours `{best['method']}` drop {drop:.2f}{drop_ok}; "
                     f"vs Torch-Pruning {vs['mean']:+.2f} ± {vs['se']:.2f} "
                     f"({'at least as accurate' if vs['mean'] >= 0 else 'behind'})")
    return ["", "Verdict per cell:", ""] + lines if lines else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, mnist1d only, 1 epoch")
    parser.add_argument("--tasks", nargs="*", help="subset of tasks")
    parser.add_argument("--seeds", nargs="*", type=int, help="subset of seeds")
    parser.add_argument("--methods", nargs="*", help=f"subset of {ALL_METHODS} (default: {METHODS})")
    parser.add_argument("--targets", nargs="*", type=float, help="MAC fractions to keep (default 0.5 0.25)")
    parser.add_argument("--out", default="runs/strategies")
    parser.add_argument("--no-latency", action="store_true", help="skip the ONNX Runtime timing (accuracy only)")
    parser.add_argument("--resume", action="store_true", help="skip runs already in runs.jsonl")
    parser.add_argument("--merge", nargs="*", help="only summarise the runs.jsonl of these run directories into --out "
                                                    "(a later directory's run replaces an earlier one's)")
    args = parser.parse_args()
    if args.merge:
        # a later directory's run replaces an earlier one's of the same task, seed, budget and method
        merged = {}
        for d in args.merge:
            for line in (Path(d) / "runs.jsonl").read_text().splitlines():
                r = json.loads(line)
                merged[(r["task"], r["seed"], r["keep"], r["method"])] = r
        rows = [r for r in merged.values() if not args.methods or r["method"] in args.methods]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        cfg = BenchConfig(tasks=tuple(sorted({r["task"] for r in rows})), seeds=tuple(sorted({r["seed"] for r in rows})))
        summary = summarize(rows)
        (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "summary": summary, "runs": rows}, indent=1))
        (out / "results.md").write_text(markdown(summary, cfg))
        print(markdown(summary, cfg))
        return
    cfg = BenchConfig(tasks=("mnist1d",), seeds=(0,), epochs=1) if args.quick else BenchConfig()
    if args.tasks:
        cfg = BenchConfig(**{**asdict(cfg), "tasks": tuple(args.tasks)})
    if args.seeds:
        cfg = BenchConfig(**{**asdict(cfg), "seeds": tuple(args.seeds)})
    if args.methods:
        unknown = sorted(set(args.methods) - set(ALL_METHODS))
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {ALL_METHODS}")
        cfg = BenchConfig(**{**asdict(cfg), "methods": tuple(args.methods)})
    if args.targets:
        cfg = BenchConfig(**{**asdict(cfg), "targets": tuple(args.targets)})
    if args.no_latency:
        cfg = BenchConfig(**{**asdict(cfg), "latency": False})
    torch.set_num_threads(cfg.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.exists() else []
    done = {(r["task"], r["seed"], r["keep"], r["method"]) for r in rows}
    if not args.resume:
        log.write_text("")
    for task in cfg.tasks:
        for seed in cfg.seeds:
            for keep in cfg.targets:
                for method in cfg.methods:
                    if (task, seed, keep, method) in done:
                        continue
                    row = one_run(task, seed, keep, method, cfg)
                    rows.append(row)
                    with log.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{task} seed {seed} {1 / keep:.0f}x {method:14s} acc {row['accuracy']:.2f} "
                          f"(drop {row['drop']:+.2f}) MACs {row['macs'] / row['base_macs']:.3f} "
                          f"lat {row['latency_ms']:.3f} ms  {row['seconds']:.0f}s", flush=True)
    summary = summarize([r for r in rows if r["task"] in cfg.tasks])
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "summary": summary, "runs": rows}, indent=1))
    text = markdown(summary, cfg)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
