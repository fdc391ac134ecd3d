"""Prune + INT8 on ONNX Runtime, LiteRT or ExecuTorch: accuracy on real tasks, latency at 224 px, against Torch-Pruning.

Accuracy (``--accuracy``): ``edgeprune prune TASK --data TASK --target macs=0.5 --quantize int8
--max-drop 1`` on ``mnist``, ``mnist1d`` and ``sensors`` (their pretrained models, seed 0; sensors is
judged on its event-level F1, ``--evaluate edgeprune.tasks.sensors:event_f1``), through
:func:`edgeprune.run.run_pipeline` itself. Reported per task: dense FP32, dense INT8 (quantize only),
pruned FP32 and pruned INT8 accuracy on the validation split, each INT8 figure the file run in its runtime (ONNX
Runtime, or ``--runtime``'s); and the pruned INT8 file's drop against dense FP32 (the goal: within 1.0 point).

Latency (``--latency``): torchvision resnet18 and mobilenet_v2, random init (seed 0; weights do not
change latency), 1x3x224x224, batch 1, ONNX Runtime CPU at ``--threads``:

* ours: ``edgeprune.prune(budget=Budget(macs=0.5), strategy="uniform", criterion="l2", round_to=16)``
  (``--plan speedup`` uses the latency-aware ``speedup=2x`` plan instead: a latency table of the
  model is built first, which takes long on two busy cores);
* Torch-Pruning 1.6 ``MetaPruner(GroupMagnitudeImportance(p=2), round_to=16)``, classifier kept,
  its ratio bisected to our MACs (``benchmarks/latency_aware.py``'s helpers);
* each quantized by the same ``edgeprune.quantize.quantize_onnx`` (QDQ, U8S8, per-channel),
  calibrated on 4 batches of 8 random images (random weights: the ranges, not the accuracy, matter).

All six files of one architecture (dense FP32, dense INT8, ours FP32/INT8, Torch-Pruning FP32/INT8)
are timed in one process, interleaved (``edgeprune.runtimes.measure_interleaved``: single runs
alternate between the files, 20 rounds; each figure relative to dense FP32 in the same round).
``--runtime litert`` (or ``executorch``) makes every file for that runtime instead: FP32 by its
plug-in, INT8 by its PT2E quantizer (``edgeprune.quantize.litert`` with the residual adds annotated,
int8 input fed pre-quantized; ``edgeprune.quantize.executorch``), timed on it; ``--runtime openvino``
makes IRs (INT8 by NNCF on the ONNX file, ``edgeprune.quantize.openvino``; its latency path and
``--plan speedup`` on OpenVINO were not run yet); with ``--plan
speedup`` the latency table and the search run on it too, so each ratio is dense FP32 -> pruned
INT8 on the runtime the device runs. ``--table-precision int8`` (issue 14) times that table with the
runtime's int8 kernels and searches ``Budget(speedup=2, precision="int8")``: pruned INT8 2x faster
than dense INT8, both measured as INT8 files; ``float32,int8`` makes both plans in one run (the
FP32-table plan as the baseline, Torch-Pruning matched to the first one's MACs).
The goal: pruned + INT8 >= 4x (resnet18) and >= 3x (mobilenet_v2) faster than dense FP32.

    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/int8.py --latency
    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/int8.py --latency --plan speedup --runtime litert
    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/int8.py --latency --plan speedup --runtime litert \
        --table-precision int8,float32 --archs resnet18 --rounds 15
    .venv/bin/python benchmarks/int8.py --accuracy
    .venv/bin/python benchmarks/int8.py --accuracy --runtime openvino --tasks mnist,mnist1d
    .venv/bin/python benchmarks/int8.py --latency --size 96 --rounds 4     # a quick smoke test

Results go to ``--out`` (default ``runs/int8``) as ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from latency_aware import bisect, macs_of, torch_pruning_model  # noqa: E402

import edgeprune  # noqa: E402
from edgeprune.budget import Budget  # noqa: E402
from edgeprune.export.onnx import export_onnx  # noqa: E402
from edgeprune.quantize import quantize_onnx  # noqa: E402
from edgeprune.runtimes import Artifact, measure_interleaved  # noqa: E402

CLASSIFIER = {"resnet18": "fc", "mobilenet_v2": "classifier.1"}
GOAL = {"resnet18": 4.0, "mobilenet_v2": 3.0}


# the metric a task is judged on where it is not classification accuracy
EVALUATE = {"sensors": "edgeprune.tasks.sensors:event_f1"}


def accuracy_rows(tasks: list[str], out: Path, log, epochs: int = 1, runtime: str = "onnxruntime") -> list[dict]:
    from edgeprune.run import recipe_from_mapping, run_pipeline

    rows = []
    for task in tasks:
        started = time.time()
        spec = {"model": task, "data": task, "target": "macs=0.5", "quantize": "int8",
                "max_drop": 1.0, "seed": 0, "epochs": epochs, "runtime": runtime}
        if task in EVALUATE:  # a detection task is judged on its detection metric, not window accuracy
            spec["evaluate"] = EVALUATE[task]
        recipe = recipe_from_mapping(spec)
        outcome = run_pipeline(recipe, out / f"run-{task}-{runtime}", force=True)
        m = outcome.metrics
        st = m["int8"]["stages"]
        row = {"task": task, "runtime": runtime, "epochs": epochs, "exit_code": m["exit_code"],
               "macs_ratio": st["pruned_int8"]["macs"] / st["dense_fp32"]["macs"],
               **{f"{k}_acc": st[k]["accuracy"] for k in st},
               **{f"{k}_bytes": st[k]["bytes"] for k in st},
               "drop_pruned_int8": st["dense_fp32"]["accuracy"] - st["pruned_int8"]["accuracy"],
               "drop_dense_int8": st["dense_fp32"]["accuracy"] - st["dense_int8"]["accuracy"],
               "seconds": round(time.time() - started, 1)}
        log(f"[{task}] {row}")
        rows.append(row)
    return rows


def pruned_ours(model, x, plan: str, threads: int, log, runtime: str = "onnxruntime", precision: str = "float32"):
    if plan == "speedup":
        from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
        from edgeprune.targets import LatencyPredictor, TableConfig, build_table

        started = time.perf_counter()
        table = build_table(model, x, TableConfig(runtime=runtime, threads=threads, stat="min", spinning=False,
                                                  levels=6, runs=5, rounds=10, precision=precision), log=log)
        log(f"{precision} table built in {time.perf_counter() - started:.0f} s")
        found = prune_to_latency(model, x, LatencyPredictor(table),
                                 Budget(speedup=2.0, runtime=runtime, threads=threads, precision=precision),
                                 LatencySearch(max_attempts=4),
                                 measure=MeasureConfig(threads=threads, rounds=10,
                                                       exporter="torchscript" if runtime == "onnxruntime" else "auto"),
                                 log=log)
        return found.model, (f"latency-aware speedup=2x on the {runtime} {precision} table "
                             f"({len(found.attempts)} attempts, search measured x{found.measured_speedup:.2f}, "
                             f"{'met' if found.met else 'missed'})")
    result = edgeprune.prune(model, x, budget=Budget(macs=0.5), strategy="uniform", criterion="l2", round_to=16)
    return result.model, "uniform L2 macs=0.5 round_to=16"


def files_for(runtime: str, name: str, m, x, batches, tmp: Path, log) -> tuple[Path, Path, dict]:
    """The FP32 and INT8 files of ``m`` for ``runtime``, and the INT8 file's check against fake-quant."""
    if runtime == "onnxruntime":
        fp32 = export_onnx(m, x, tmp / f"{name}.onnx", dynamic_batch=True, exporter="torchscript")
        q = quantize_onnx(fp32, tmp / f"{name}.int8.onnx", batches, check_inputs=batches[:1])
        extra = f"float ops {q.float_ops}"
    elif runtime == "openvino":  # NNCF on the ONNX file; the FP32 IR converted from that same file
        from edgeprune.quantize.openvino import quantize_openvino
        from edgeprune.runtimes import get_runtime

        onnx_fp32 = export_onnx(m, x, tmp / f"{name}.onnx", dynamic_batch=True, exporter="torchscript")
        fp32 = get_runtime(runtime).export(m, x, tmp / f"{name}.xml", onnx=onnx_fp32)
        q = quantize_openvino(onnx_fp32, tmp / f"{name}.int8.xml", batches, check_inputs=batches[:1])
        extra = f"int8 layers {q.int8_layers}, float layers {q.float_layers}"
    else:
        from edgeprune.runtimes import get_runtime

        rt = get_runtime(runtime)
        fp32 = rt.export(m, x, rt.artifact_path(tmp, name))
        if runtime == "litert":
            from edgeprune.quantize.litert import quantize_litert as quantize
        else:
            from edgeprune.quantize.executorch import quantize_executorch as quantize
        q = quantize(m, x, batches[:2], tmp / f"{name}.int8{rt.suffix}", check_inputs=[batches[0][:2]])
        extra = f"float ops {getattr(q, 'float_ops', getattr(q, 'undelegated', []))}"
    log(f"{name}: INT8 {q.bytes / _bytes(fp32):.3f}x the bytes, {q.parity.within_one_step:.1%} within one "
        f"step of fake-quant (max {q.parity.max_steps:.2f}), {extra}")
    return fp32, q.path, {"steps": q.parity.max_steps, "within": q.parity.within_one_step}


def latency_rows(arch: str, args, log) -> list[dict]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)().eval()
    x = torch.randn(1, 3, args.size, args.size)
    rt = args.runtime
    precisions = args.table_precision.split(",") if args.plan == "speedup" else ["float32"]
    plans = {}
    for i, prec in enumerate(precisions):
        name = "ours" if i == 0 else f"ours-{prec}-table"
        plans[name] = pruned_ours(model, x, args.plan, args.threads, lambda m: log(f"  [{arch}] {m}"), rt, prec)
    ours, how = plans["ours"]
    target = macs_of(ours, x)
    (ratio, tpm), _ = bisect(lambda r: torch_pruning_model(model, x, r, CLASSIFIER[arch]), target, x)
    log(f"[{arch}] ours {how}: MACs x{target / macs_of(model, x):.3f}; Torch-Pruning ratio {ratio:.4f} "
        f"MACs x{macs_of(tpm, x) / macs_of(model, x):.3f}")
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((8, 3, args.size, args.size)).astype(np.float32) for _ in range(4)]
    with tempfile.TemporaryDirectory(prefix="edgeprune-int8-bench-") as tmp:
        files, checks, artifacts = {}, {}, {}
        extra = [(name, m) for name, (m, _) in plans.items() if name != "ours"]
        for name, m in (("dense", model), ("ours", ours), *extra, ("torch-pruning", tpm)):
            fp32, int8, checks[name] = files_for(rt, name, m, x, batches, Path(tmp), lambda t: log(f"[{arch}] {t}"))
            files[f"{name} FP32"], files[f"{name} INT8"] = fp32, int8
            artifacts[f"{name} FP32"] = Artifact(rt, fp32)
            inputs = None
            if rt == "litert":  # the INT8 file takes int8 input: fed pre-quantized, as a device would
                scale, zero = _tflite_input_quant(int8)
                inputs = torch.from_numpy(np.clip(np.round(x.numpy() / scale) + zero, -128, 127).astype(np.int8))
            artifacts[f"{name} INT8"] = Artifact(rt, int8, inputs=inputs)
        order = ["dense FP32", "dense INT8", "ours FP32", "ours INT8",
                 *[f"{name} {p}" for name, _ in extra for p in ("FP32", "INT8")],
                 "torch-pruning FP32", "torch-pruning INT8"]
        got = measure_interleaved({k: artifacts[k] for k in order}, x, threads=args.threads, rounds=args.rounds,
                                  runs=5, warmup=2)
        sizes = {k: _bytes(files[k]) for k in order}
    macs = {"dense": macs_of(model, x), "ours": target, "torch-pruning": macs_of(tpm, x),
            **{name: macs_of(m, x) for name, m in extra}}
    dense_ms = got["dense FP32"].ms
    rows = []
    for k in order:
        who = k.split(" ")[0]
        rows.append({"model": arch, "runtime": rt, "version": got[k].version, "threads": args.threads,
                     "variant": k, "plan": plans[who][1] if who in plans else "", "gmacs": macs[who] / 1e9,
                     "ms": got[k].ms, "speedup_vs_dense_fp32": dense_ms / got[k].ms,
                     "speedup_vs_dense_int8": got["dense INT8"].ms / got[k].ms, "bytes": sizes[k],
                     "spread": got[k].spread, "parity_steps": checks[who]["steps"] if k.endswith("INT8") else None,
                     "within_one_step": checks[who]["within"] if k.endswith("INT8") else None})
        log(f"[{arch}] {rt} {k:26s} {got[k].ms:8.3f} ms  x{dense_ms / got[k].ms:.2f} "
            f"(x{got['dense INT8'].ms / got[k].ms:.2f} vs dense INT8)")
    return rows


def _bytes(path: Path) -> int:
    """A file's bytes; an OpenVINO IR's are its .xml and its .bin together."""
    from edgeprune.quantize.openvino import ir_bytes

    return ir_bytes(path) if path.suffix == ".xml" else os.path.getsize(path)


def _tflite_input_quant(path: Path) -> tuple[float, int]:
    from ai_edge_litert.interpreter import Interpreter

    scale, zero = Interpreter(model_path=str(path)).get_input_details()[0]["quantization"]
    return float(scale), int(zero)


def markdown(acc: list[dict], lat: list[dict], meta: dict) -> str:
    lines = [f"`{meta['command']}` ({meta['date']}, load before: {meta['uptime_before']}; after: "
             f"{meta['uptime_after']})", ""]
    if acc:
        lines += [f"runtime: {acc[0]['runtime']}", "", "| task | fine-tuning epochs | MACs | dense FP32 | dense INT8 | pruned FP32 | pruned INT8 | "
                  "pruned INT8 drop | INT8 / FP32 bytes (pruned) | exit |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in acc:
            lines.append(f"| {r['task']} | {r['epochs']} | {r['macs_ratio']:.2f}x | {r['dense_fp32_acc']:.2f} | "
                         f"{r['dense_int8_acc']:.2f} | {r['pruned_fp32_acc']:.2f} | {r['pruned_int8_acc']:.2f} | "
                         f"{r['drop_pruned_int8']:+.2f} | "
                         f"{r['pruned_int8_bytes'] / r['pruned_fp32_bytes']:.3f} | {r['exit_code']} |")
        lines.append("")
    if lat:
        lines += ["| model | variant | GMACs | ms | speed-up vs dense FP32 | vs dense INT8 | file MB | "
                  "vs fake-quant: within 1 step, max steps |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in lat:
            steps = (f"{r['within_one_step']:.1%}, {r['parity_steps']:.2f}" if r["parity_steps"] is not None else "")
            lines.append(f"| {r['model']} | {r['variant']} | {r['gmacs']:.3f} | {r['ms']:.2f} | "
                         f"{r['speedup_vs_dense_fp32']:.2f}x | {r['speedup_vs_dense_int8']:.2f}x | "
                         f"{r['bytes'] / 1e6:.2f} | {steps} |")
        for arch in dict.fromkeys(r["model"] for r in lat):
            ours = next((r for r in lat if r["model"] == arch and r["variant"] == "ours INT8"), None)
            if ours is None:
                continue
            verdict = "met" if ours["speedup_vs_dense_fp32"] >= GOAL[arch] else "missed"
            lines.append(f"\n{arch}: pruned + INT8 {ours['speedup_vs_dense_fp32']:.2f}x faster than dense FP32, both "
                         f"on {ours['runtime']} {ours['version']} at {ours['threads']} threads (goal {GOAL[arch]:g}x: "
                         f"{verdict}; plan {ours['plan']}).")
            tp = next((r for r in lat if r["model"] == arch and r["variant"] == "torch-pruning INT8"), None)
            if tp is not None:
                lines.append(f"{arch}: ours INT8 {ours['speedup_vs_dense_fp32']:.2f}x vs Torch-Pruning INT8 "
                             f"{tp['speedup_vs_dense_fp32']:.2f}x at {ours['gmacs']:.3f} vs {tp['gmacs']:.3f} GMACs "
                             f"({'ours >= Torch-Pruning' if ours['ms'] <= tp['ms'] else 'Torch-Pruning faster'}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accuracy", action="store_true", help="mnist and mnist1d through the pipeline")
    p.add_argument("--latency", action="store_true", help="resnet18 and mobilenet_v2 on ONNX Runtime")
    p.add_argument("--tasks", default="mnist,mnist1d,sensors")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs of the accuracy runs")
    p.add_argument("--archs", default="resnet18,mobilenet_v2")
    p.add_argument("--plan", choices=("macs", "speedup"), default="macs")
    p.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "litert", "executorch", "openvino"),
                   help="the runtime every file is made for and timed on (and, with --plan speedup, planned on)")
    p.add_argument("--table-precision", default="float32",
                   help="with --plan speedup: the latency table's kernels, float32 or int8 (or both, comma-separated: "
                        "the first is 'ours', Torch-Pruning matched to its MACs)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--out", default="runs/int8")
    args = p.parse_args()
    if not (args.accuracy or args.latency):
        args.accuracy = args.latency = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    meta = {"command": " ".join(["benchmarks/int8.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "uptime_before": os.popen("uptime").read().strip()}
    acc = accuracy_rows(args.tasks.split(","), out, log, args.epochs, args.runtime) if args.accuracy else []
    lat = [r for arch in args.archs.split(",") for r in latency_rows(arch, args, log)] if args.latency else []
    meta["uptime_after"] = os.popen("uptime").read().strip()
    (out / "results.json").write_text(json.dumps({"meta": meta, "accuracy": acc, "latency": lat}, indent=1))
    text = markdown(acc, lat, meta)
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
