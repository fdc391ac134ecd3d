"""Hardware-aware pruning on ONNX Runtime: a 2x latency target met on the runtime, against MAC-driven pruning.

For torchvision resnet18 and mobilenet_v2 (random init, seed 0; the weights' values do not change
latency) at 1x3x224x224, ONNX Runtime CPU, 2 intra-op threads:

* ours: ``edgeprune.targets.build_table`` on this machine, then
  ``edgeprune.latency_aware.prune_to_latency(speedup=2.0)`` (allocate on fast steps, export, measure,
  tighten, repeat);
* plain magnitude: ``edgeprune.prune(strategy="uniform", criterion="l2")`` with the ratio found by
  bisection so its MACs match ours (within one channel per layer);
* Torch-Pruning 1.6 ``MetaPruner`` with ``GroupMagnitudeImportance(p=2)`` and ``round_to=16``, the
  pruning ratio found the same way.

All four models of one architecture are then measured together, interleaved run by run
(``edgeprune.targets.measured``); speed-up = unpruned / pruned, both from that one session.

    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/latency_aware.py
    .venv/bin/python benchmarks/latency_aware.py --quick          # 128x128, fewer runs: a smoke test

``--no-spinning`` (the default on a shared machine, see ``edgeprune.targets.measured``) makes ONNX
Runtime's idle worker threads block; ``--spinning`` keeps ORT's default. Results go to ``--out``
(default ``runs/latency_aware``) as ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

import edgeprune
from edgeprune.latency_aware import LatencyBudget, MeasureConfig, check_plan, prune_to_latency
from edgeprune.measure import count_macs
from edgeprune.targets import LatencyPredictor, TableConfig, build_table
from edgeprune.targets.measured import measure_models


@dataclass
class Row:
    model: str
    variant: str
    macs: int
    mac_reduction: float
    predicted_ms: float
    measured_ms: float
    speedup: float
    speedup_per_mac_reduction: float
    warnings: int
    note: str = ""


def macs_of(model: nn.Module, x: torch.Tensor) -> int:
    return count_macs(model.eval(), x).total


def bisect(make, target_macs: int, x: torch.Tensor, hi: float = 0.9, iterations: int = 12):
    """The smallest pruning ratio whose model has at most ``target_macs`` MACs: (ratio, model)."""
    lo, best = 0.0, None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        m = make(mid)
        if macs_of(m, x) <= target_macs:
            hi, best = mid, (mid, m)
        else:
            lo = mid
    if best is None:
        best = (hi, make(hi))
    return best


def torch_pruning_model(model: nn.Module, x: torch.Tensor, ratio: float, classifier: str) -> nn.Module:
    import torch_pruning as tp

    m = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, round_to=16,
                                  ignored_layers=[m.get_submodule(classifier)])
    pruner.step()
    return m.eval()


def run_one(arch: str, args, log) -> list[Row]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)().eval()
    x = torch.randn(1, 3, args.size, args.size)
    classifier = {"resnet18": "fc", "mobilenet_v2": "classifier.1"}[arch]
    spinning = args.spinning
    started = time.time()
    table = build_table(model, x, TableConfig(threads=args.threads, runs=args.runs, warmup=2, stat="min",
                                              passes=args.passes, spinning=spinning, levels=args.levels,
                                              rounds=args.rounds), log=lambda m: log(f"  [{arch}] {m}"))
    table.save(Path(args.out) / f"table-{arch}-{args.size}.json")
    log(f"[{arch}] table built in {time.time() - started:.0f}s")
    predictor = LatencyPredictor(table)
    measure = MeasureConfig(threads=args.threads, rounds=args.rounds, runs=5, exporter="torchscript")
    ours = prune_to_latency(model, x, predictor, LatencyBudget(speedup=args.speedup, max_attempts=4),
                            measure=measure, log=lambda m: log(f"  [{arch}] {m}"))
    dense_macs = macs_of(model, x)
    ours_macs = macs_of(ours.model, x)
    log(f"[{arch}] ours: MACs {dense_macs / ours_macs:.2f}x lower, met={ours.met}")

    r_uni, uniform = bisect(lambda r: edgeprune.prune(model, x, r, criterion="l2", strategy="uniform").model,
                            ours_macs, x)
    r_tp, tpm = bisect(lambda r: torch_pruning_model(model, x, r, classifier), ours_macs, x)
    uniform_plan = edgeprune.prune(model, x, r_uni, criterion="l2", strategy="uniform").plan
    log(f"[{arch}] uniform ratio {r_uni:.3f}, torch-pruning ratio {r_tp:.3f}")

    variants = {"unpruned": model, "ours (latency-aware)": ours.model, "uniform L2": uniform,
                "torch-pruning round_to=16": tpm}
    got = measure_models(variants, x, threads=args.threads, rounds=args.final_rounds, runs=5,
                         exporter="torchscript", spinning=spinning)
    predictor.refit()
    warnings = {"unpruned": 0, "ours (latency-aware)": len(check_plan(ours.plan, predictor).warnings),
                "uniform L2": len(check_plan(uniform_plan, predictor).warnings), "torch-pruning round_to=16": 0}
    rows = []
    dense_ms = got["unpruned"].ms
    for name, m in variants.items():
        macs = macs_of(m, x)
        red = dense_macs / macs
        speed = dense_ms / got[name].ms
        note = {"uniform L2": f"ratio {r_uni:.3f}", "torch-pruning round_to=16": f"ratio {r_tp:.3f}",
                "ours (latency-aware)": f"{len(ours.attempts)} attempt(s), met={ours.met}"}.get(name, "")
        rows.append(Row(arch, name, macs, round(red, 3), round(predictor.predict_model(m), 3),
                        round(got[name].ms, 3), round(speed, 3), round(speed / red, 3), warnings[name], note))
    return rows


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [f"Input 1x3x{meta['size']}x{meta['size']}, ONNX Runtime {meta['onnxruntime']} CPU, {meta['threads']} threads, "
             f"spinning {'on' if meta['spinning'] else 'off'}; load before/after: {meta['load_before']} / {meta['load_after']}",
             "", "| model | variant | GMACs | MAC reduction | predicted ms | measured ms | speed-up | speed-up / MAC reduction | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.variant} | {r.macs / 1e9:.3f} | {r.mac_reduction:.2f}x | {r.predicted_ms:.2f} | "
                     f"{r.measured_ms:.2f} | {r.speedup:.2f}x | {r.speedup_per_mac_reduction:.2f} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per table point")
    parser.add_argument("--passes", type=int, default=2, help="passes over the table")
    parser.add_argument("--levels", type=int, default=6, help="timed counts per group")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per verification")
    parser.add_argument("--final-rounds", type=int, default=20, help="interleaved rounds of the final measurement")
    parser.add_argument("--spinning", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--quick", action="store_true", help="128x128, fewer runs (a smoke test)")
    parser.add_argument("--out", default="runs/latency_aware")
    args = parser.parse_args()
    if args.quick:
        args.size, args.runs, args.passes, args.levels, args.rounds, args.final_rounds = 128, 5, 1, 4, 5, 8
    Path(args.out).mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    meta = {"size": args.size, "threads": args.threads, "spinning": args.spinning, "onnxruntime": ort.__version__,
            "torch": torch.__version__, "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    started = time.time()
    rows: list[Row] = []
    for arch in args.models:
        rows += run_one(arch, args, log=lambda m: print(m, flush=True))
    meta["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    meta["seconds"] = round(time.time() - started)
    text = markdown(rows, meta)
    print(text)
    (Path(args.out) / "results.md").write_text(text + "\n")
    (Path(args.out) / "results.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
