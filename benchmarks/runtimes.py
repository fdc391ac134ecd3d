"""Plans tuned on one runtime, measured on every runtime: does a pruning gain transfer? (issue 13)

For torchvision resnet18 and mobilenet_v2 (random init, seed 0; weight values do not change
latency), batch 1, on this machine:

* ``latency-aware (R table)``, for every runtime R of ``--tune-on``: R's latency table
  (``edgeprune.targets.build_table(TableConfig(runtime=R))``) and
  ``edgeprune.strategies.latency_search.prune_to_latency(Budget(speedup=2, runtime=R))``, planned on
  R's table and verified on R (the search's own interleaved measurement);
* ``torch-pruning round_to=16 @ R MACs``: Torch-Pruning 1.6 ``MetaPruner`` (L2 group magnitude,
  channels rounded to 16) at the MACs of R's plan (ratio by bisection);
* ``uniform L2``: ``edgeprune.prune(strategy="uniform")`` at the MACs of the first tuned plan;
* mobilenet_v2 only, the case that motivated the issue: 60% of each expansion kept at odd widths
  (``uniform``, ratio 0.4), and the same cut with counts rounded to 8.

Every variant is exported to each runtime's file (checked against PyTorch: the worst relative
error is printed) and all variants of one architecture are timed together, interleaved, on one
runtime at a time (``edgeprune.runtimes.measure_interleaved``); speed-up = unpruned / variant from
that one session. The matrix is plan (tuned on A) x runtime measured on (B), for every pair; the
summary compares, on each runtime, its own plan with Torch-Pruning's at equal MACs.

    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/runtimes.py            # 224 px, 1 and 2 threads
    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/runtimes.py --quick    # 128 px, 2 threads
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))

import edgeprune  # noqa: E402
from edgeprune.runtimes import Artifact, get_runtime, measure_interleaved  # noqa: E402

CLASSIFIER = {"resnet18": "fc", "mobilenet_v2": "classifier.1"}


def variants(arch: str, x: torch.Tensor, args, log) -> tuple[torch.nn.Module, dict[str, torch.nn.Module]]:
    from latency_aware import bisect, macs_of, torch_pruning_model

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)().eval()
    out: dict[str, torch.nn.Module] = {}
    tuned: list[int] = []
    threads = args.threads[-1]
    for rt in ([] if args.no_latency_aware else args.tune_on):
        started = time.time()
        try:
            ours, built = tune(model, x, rt, threads, args, log, arch)
        except Exception as exc:  # a runtime that fails to plan is reported, the others still run
            log(f"[{arch}] {rt}: tuning FAILED: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        log(f"[{arch}] {rt} table at {threads} threads in {built:.0f}s; search: {len(ours.attempts)} attempt(s), "
            f"{'met' if ours.met else 'missed'}, {ours.measured_speedup:.2f}x measured on {rt}; "
            f"{time.time() - started:.0f}s in all")
        out[f"latency-aware ({rt} table)"] = ours.model
        macs = macs_of(ours.model, x)
        tuned.append(macs)
        # round_to=16 moves Torch-Pruning's MACs in jumps: time the plans on both sides of ours and
        # interpolate its speed-up at our MACs (the summary), instead of crediting it with more MACs cut
        (_, tpm), above = bisect(lambda r: torch_pruning_model(model, x, r, CLASSIFIER[arch]), macs, x)
        out[f"torch-pruning round_to=16 @ {rt} MACs"] = tpm
        if above is not None:
            out[f"torch-pruning round_to=16 above {rt} MACs"] = above[1]
    target = tuned[0] if tuned else macs_of(model, x) // 2
    (_, uniform), _ = bisect(lambda r: edgeprune.prune(model, x, r, strategy="uniform").model, target, x)
    out["uniform L2, equal MACs"] = uniform
    if not tuned:
        (_, tpm), _ = bisect(lambda r: torch_pruning_model(model, x, r, CLASSIFIER[arch]), target, x)
        out["torch-pruning round_to=16, equal MACs"] = tpm
    if arch == "mobilenet_v2":
        out["60% kept, odd widths"] = edgeprune.prune(model, x, 0.4, strategy="uniform").model
        out["60% kept, rounded to 8"] = edgeprune.prune(model, x, 0.4, strategy="uniform", round_to=8).model
    return model, out


def tune(model, x, rt: str, threads: int, args, log, arch: str):
    """``rt``'s latency table of ``model`` and the ``speedup=2x`` plan searched and verified on ``rt``."""
    from edgeprune.budget import Budget
    from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
    from edgeprune.targets import LatencyPredictor, TableConfig, build_table

    started = time.time()
    table = build_table(model, x, TableConfig(runtime=rt, threads=threads, runs=args.table_runs, warmup=2,
                                              stat="min", spinning=False, rounds=args.rounds, levels=args.levels),
                        log=lambda m: log(f"  [{arch}] {m}"))
    built = time.time() - started
    ours = prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=2.0, runtime=rt, threads=threads),
                            LatencySearch(max_attempts=4, headroom=args.headroom),
                            measure=MeasureConfig(threads=threads, rounds=args.rounds, runs=5,
                                                  exporter="torchscript" if rt == "onnxruntime" else "auto"),
                            log=lambda m: log(f"  [{arch}] {m}"))
    return ours, built


def measure(arch: str, model, plans: dict, x: torch.Tensor, runtimes: list[str], threads: int, folder: Path,
            rounds: int, log) -> list[dict]:
    from latency_aware import macs_of

    rows = []
    models = {"unpruned": model, **plans}
    dense_macs = macs_of(model, x)
    onnx: dict[str, Path] = {}
    for rt_name in runtimes:
        rt = get_runtime(rt_name)
        arts, parity = {}, {}
        started = time.time()
        for name, m in models.items():
            path = rt.artifact_path(folder / arch / rt_name, name.replace(" ", "_").replace(",", "").replace("=", ""))
            if not path.exists():
                options = {"exporter": "torchscript"} if rt_name == "onnxruntime" else {}
                if rt_name == "openvino" and name in onnx:
                    options = {"onnx": onnx[name]}
                rt.export(m, x, path, **options)
            if rt_name == "onnxruntime":
                onnx[name] = path
            parity[name] = rt.check(path, m, x).max_rel
            arts[name] = Artifact(rt_name, path)
        got = measure_interleaved(arts, x, threads=threads, rounds=rounds, runs=5)
        log(f"[{arch}] {rt_name} {threads} thread(s): exported + timed in {time.time() - started:.0f}s")
        dense = got["unpruned"].ms
        for name, m in models.items():
            rows.append({"model": arch, "plan": name, "runtime": rt_name, "version": got[name].version,
                         "threads": threads, "precision": got[name].precision, "ms": round(got[name].ms, 3),
                         "speedup": round(dense / got[name].ms, 3),
                         "mac_reduction": round(dense_macs / macs_of(m, x), 3),
                         "parity_max_rel": parity[name], "load": round(os.getloadavg()[0], 2)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = []
    for arch in dict.fromkeys(r["model"] for r in rows):
        cols = list(dict.fromkeys((r["runtime"], r["threads"]) for r in rows if r["model"] == arch))
        lines.append(f"\n{arch}: speed-up over unpruned (MAC reduction); rows: plans, columns: the runtime measured on\n")
        lines.append("| plan | MACs | " + " | ".join(f"{rt} {t}t" for rt, t in cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        for plan in dict.fromkeys(r["plan"] for r in rows if r["model"] == arch):
            if plan == "unpruned":
                continue
            cells = {(r["runtime"], r["threads"]): r for r in rows if r["model"] == arch and r["plan"] == plan}
            red = next(iter(cells.values()))["mac_reduction"]
            lines.append(f"| {plan} | {red:.2f}x | " + " | ".join(f"{cells[c]['speedup']:.2f}x" for c in cols) + " |")
        worst = max(r["parity_max_rel"] for r in rows if r["model"] == arch)
        lines.append(f"\nworst parity over every artifact: {worst:.1e} (relative)")
        summary = []
        for rt, t in cols:
            cell = {r["plan"]: r for r in rows if r["model"] == arch and r["runtime"] == rt and r["threads"] == t}
            ours, tp = cell.get(f"latency-aware ({rt} table)"), cell.get(f"torch-pruning round_to=16 @ {rt} MACs")
            if ours and tp:
                tp_at, how = tp["speedup"], f"at {tp['mac_reduction']:.2f}x MACs"
                up = cell.get(f"torch-pruning round_to=16 above {rt} MACs")
                if up and up["mac_reduction"] < ours["mac_reduction"] < tp["mac_reduction"]:
                    w = (ours["mac_reduction"] - up["mac_reduction"]) / (tp["mac_reduction"] - up["mac_reduction"])
                    tp_at = up["speedup"] + w * (tp["speedup"] - up["speedup"])
                    how = (f"interpolated between {up['speedup']:.2f}x at {up['mac_reduction']:.2f}x and "
                           f"{tp['speedup']:.2f}x at {tp['mac_reduction']:.2f}x MACs")
                verdict = "meets" if ours["speedup"] >= 2.0 and ours["speedup"] >= tp_at else "misses"
                summary.append(f"| {rt} | {t} | {ours['speedup']:.2f}x ({ours['mac_reduction']:.2f}x MACs) | "
                               f"{tp_at:.2f}x ({how}) | {verdict} |")
        if summary:
            lines.append(f"\n{arch}: each runtime's own plan against Torch-Pruning round_to=16 at equal MACs, on that runtime\n")
            lines.append("| runtime | threads | ours (tuned there) | Torch-Pruning | >= 2.0x and >= TP |")
            lines.append("|---|---|---|---|---|")
            lines += summary
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--runtimes", default="onnxruntime,litert,executorch,openvino")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--table-runs", type=int, default=5)
    parser.add_argument("--no-latency-aware", action="store_true", help="skip the tables and their plans (fast)")
    parser.add_argument("--tune-on", default=None, help="runtimes whose tables plan (default: --runtimes)")
    parser.add_argument("--headroom", type=float, default=0.0,
                        help="accept a search attempt only this fraction under the goal (LatencySearch.headroom)")
    parser.add_argument("--levels", type=int, default=6, help="timed kept counts per group in each table")
    parser.add_argument("--quick", action="store_true", help="128 px, 2 threads, 5 rounds")
    parser.add_argument("--out", default="runs/runtimes")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.threads, args.rounds = 128, [2], 5
    runtimes = [r for r in args.runtimes.split(",") if r]
    args.tune_on = [r for r in (args.tune_on or args.runtimes).split(",") if r]
    for r in runtimes:
        get_runtime(r).require()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    log(f"models {args.models}, {args.size} px, threads {args.threads}, runtimes {runtimes}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    x = torch.randn(1, 3, args.size, args.size)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgeprune-runtimes-") as tmp:
        for arch in args.models:
            model, plans = variants(arch, x, args, log)
            for threads in args.threads:
                rows += measure(arch, model, plans, x, runtimes, threads, Path(tmp), args.rounds, log)
                (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = markdown(rows)
    (out / "results.md").write_text(text + "\n")
    print(text)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
