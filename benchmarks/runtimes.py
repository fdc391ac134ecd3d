"""Plans tuned on one runtime, measured on every runtime: does a pruning gain transfer? (issue 13)

For torchvision resnet18 and mobilenet_v2 (random init, seed 0; weight values do not change
latency), batch 1, on this machine:

* ``latency-aware``: the ONNX Runtime latency table (``edgeprune.targets.build_table``) and
  ``edgeprune.strategies.latency_search.prune_to_latency(Budget(speedup=2))`` verified on ORT;
* ``uniform L2``: ``edgeprune.prune(strategy="uniform")`` at the same MACs (ratio by bisection);
* ``torch-pruning round_to=16``: Torch-Pruning 1.6 ``MetaPruner`` (L2 group magnitude) at the
  same MACs;
* mobilenet_v2 only, the case that motivated the issue: 60% of each expansion kept at odd widths
  (``uniform``, ratio 0.4), and the same cut with counts rounded to 8.

Every variant is exported to each runtime's file (checked against PyTorch: the worst relative
error is printed) and all variants of one architecture are timed together, interleaved, on one
runtime at a time (``edgeprune.runtimes.measure_interleaved``); speed-up = unpruned / variant from
that one session. The matrix is plan (tuned on ORT) x runtime measured on.

Not covered yet: plans tuned on LiteRT, ExecuTorch or OpenVINO themselves (the latency tables are
built on ORT only), so the diagonal exists for ORT alone.

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

    from edgeprune.budget import Budget
    from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
    from edgeprune.targets import LatencyPredictor, TableConfig, build_table

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)().eval()
    out: dict[str, torch.nn.Module] = {}
    if not args.no_latency_aware:
        started = time.time()
        table = build_table(model, x, TableConfig(threads=args.threads[-1], runs=args.table_runs, warmup=2,
                                                  stat="min", spinning=False, rounds=args.rounds),
                            log=lambda m: log(f"  [{arch}] {m}"))
        log(f"[{arch}] ORT table at {args.threads[-1]} threads in {time.time() - started:.0f}s")
        ours = prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=2.0), LatencySearch(max_attempts=4),
                                measure=MeasureConfig(threads=args.threads[-1], rounds=args.rounds, runs=5,
                                                      exporter="torchscript"),
                                log=lambda m: log(f"  [{arch}] {m}"))
        out["latency-aware (ORT table)"] = ours.model
        target = macs_of(ours.model, x)
    else:
        target = macs_of(model, x) // 2
    (_, uniform), _ = bisect(lambda r: edgeprune.prune(model, x, r, strategy="uniform").model, target, x)
    (_, tpm), _ = bisect(lambda r: torch_pruning_model(model, x, r, CLASSIFIER[arch]), target, x)
    out["uniform L2, equal MACs"] = uniform
    out["torch-pruning round_to=16, equal MACs"] = tpm
    if arch == "mobilenet_v2":
        out["60% kept, odd widths"] = edgeprune.prune(model, x, 0.4, strategy="uniform").model
        out["60% kept, rounded to 8"] = edgeprune.prune(model, x, 0.4, strategy="uniform", round_to=8).model
    return model, out


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
        lines.append(f"\n{arch}: speed-up over unpruned (MAC reduction), plans tuned on ONNX Runtime\n")
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--runtimes", default="onnxruntime,litert,executorch,openvino")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--table-runs", type=int, default=5)
    parser.add_argument("--no-latency-aware", action="store_true", help="skip the ORT table and its plan (fast)")
    parser.add_argument("--quick", action="store_true", help="128 px, 2 threads, 5 rounds")
    parser.add_argument("--out", default="runs/runtimes")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.threads, args.rounds = 128, [2], 5
    runtimes = [r for r in args.runtimes.split(",") if r]
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
