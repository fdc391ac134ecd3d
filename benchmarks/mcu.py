"""The sensors task on a Cortex-M4 class budget (256 KB flash, 64 KB SRAM): dense vs pruned, FP32 and
INT8, measured in TensorFlow Lite Micro, and our arena against Torch-Pruning's at equal MACs.

Model: the ``sensors`` task's detector, pretrained (seed 0). Its stream is **simulated** (see
``edgeprune.tasks.sensors``); the detection figures are on the validation stream, in time order.

* dense FP32 / dense INT8: the pretrained model; INT8 is LiteRT's static INT8
  (``edgeprune.quantize.litert.quantize_litert``) calibrated on 8 training batches (seed 0).
* ours: ``edgeprune.prune(budget=Budget(ram=64 KiB, flash=256 KiB, runtime_flash=64 KiB,
  precision="int8", max_drop=1), strategy="sram")`` (peak-first; ``--ram-kib 20`` asks for a 20 KiB
  arena instead, leaving the rest of the SRAM to the application), fine-tuned to the guard on the
  event F1 (``Finetune``, 2 epochs, up to 4), then INT8 the same way.
* Torch-Pruning 1.6 ``MetaPruner(GroupMagnitudeImportance(p=2))``, uniform per layer, classifier
  kept, its ratio bisected to our pruned model's MACs, fine-tuned the same epochs, INT8 the same way:
  the same INT8 path, so the arenas compare the plans.

Every figure of a file is the file's own: metric = the file run in TFLM (INT8) or PyTorch (FP32,
whose TFLM file agrees to 1e-4), arena = TFLM's allocator report, flash = file bytes + the stated
64 KiB runtime allowance. Latency per window (batch 1) on ONNX Runtime, LiteRT and TFLM, all files
in one interleaved session (``measure_interleaved``, dense ORT FP32 the reference); TFLM runs
reference kernels on the host, so its figure is the host's, not a microcontroller's.

    .venv/bin/python benchmarks/mcu.py          # takes /tmp/edgeprune-timing.lock for the timing only
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import edgeprune as ep  # noqa: E402
from edgeprune.budget import Budget  # noqa: E402
from edgeprune.measure.macs import count_macs  # noqa: E402
from edgeprune.quantize import Calibration, calibration_batches  # noqa: E402
from edgeprune.quantize.litert import quantize_litert  # noqa: E402
from edgeprune.recover import Finetune  # noqa: E402
from edgeprune.run.mcu import TflmModule  # noqa: E402
from edgeprune.runtimes import Artifact, get_runtime, measure_interleaved  # noqa: E402
from edgeprune.runtimes.tflm import measure_arena  # noqa: E402
from edgeprune.targets.devices import get_device  # noqa: E402
from edgeprune.targets.sram import predict_arena  # noqa: E402
from edgeprune.tasks import get_task, pretrained  # noqa: E402
from edgeprune.tasks.sensors import detection_metrics, event_f1, fault_scores  # noqa: E402


def metrics(model, val) -> dict:
    m = detection_metrics(*fault_scores(model.eval(), val))
    return {"event_f1": 100 * m["event_f1"], "auc": 100 * m["auc"], "recall": 100 * m["event_recall"],
            "precision": 100 * m["event_precision"]}


def torch_pruning_at(model, x, macs_limit: float):
    import torch_pruning as tp

    def at(ratio):
        m = copy.deepcopy(model)
        tp.pruner.MetaPruner(m, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
                             ignored_layers=[m.head], global_pruning=False).step()
        return m

    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        m = at(mid)
        if count_macs(m, x).total <= macs_limit:
            hi, best = mid, m
        else:
            lo = mid
    return best, hi


def finetune(model, train, val, epochs: int) -> None:
    from edgeprune.recover import finetune as run

    run(model, Finetune(train, epochs=epochs, lr=1e-3, val_loader=val, evaluate=event_f1))


@contextlib.contextmanager
def timing_lock(path: str = "/tmp/edgeprune-timing.lock"):
    """The benchmarks' convention (``flock /tmp/edgeprune-timing.lock``), held only while timing."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/mcu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--no-latency", action="store_true", help="skip the interleaved timing (memory and metrics only)")
    ap.add_argument("--ram-kib", type=float, default=None,
                    help="arena budget in KiB instead of the device's whole SRAM (e.g. 20: the rest for the application)")
    args = ap.parse_args()
    torch.manual_seed(0)
    started = time.time()
    m4 = get_device("cortex-m4")
    task = get_task("sensors")
    train, val = task.loaders(seed=0)
    x = task.example_input()
    dense = pretrained("sensors")
    batches = calibration_batches(train, Calibration(8, seed=0))
    fields = m4.budget_fields()
    if args.ram_kib is not None:
        fields["ram"] = args.ram_kib * 1024
    budget = Budget(**fields, precision="int8", max_drop=1.0)
    t0 = time.time()
    ours = ep.prune(dense, x, budget=budget, strategy="sram", data=train, evaluate=lambda m: event_f1(m, val),
                    finetune=Finetune(train, epochs=args.epochs, lr=1e-3), max_epochs=4).model
    prune_s = time.time() - t0
    macs = {"dense": count_macs(dense, x).total, "ours": count_macs(ours, x).total}
    tp_model, tp_ratio = torch_pruning_at(dense, x, macs["ours"])
    finetune(tp_model, train, val, args.epochs)
    macs["torch_pruning"] = count_macs(tp_model, x).total
    models = {"dense": dense, "ours": ours, "torch_pruning": tp_model}
    rows, files, parity = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            fp32 = Path(tmp) / f"{name}.tflite"
            get_runtime("tflm").export(model, x, fp32)
            onnx = get_runtime("onnxruntime").export(model, x, Path(tmp) / f"{name}.onnx")
            int8 = Path(tmp) / f"{name}.int8.tflite"
            parity[name] = quantize_litert(model, x, batches, int8).parity.to_dict()  # raises if the check fails
            files[name] = {"onnx": onnx, "fp32": fp32, "int8": int8}
            for prec, path in (("fp32", fp32), ("int8", int8)):
                arena = measure_arena(path)
                figure = metrics(model, val) if prec == "fp32" else metrics(TflmModule(path), val)
                rows[f"{name} {prec}"] = {**figure, "arena": arena.total,
                                          "predicted_arena": predict_arena(model, x, "float32" if prec == "fp32"
                                                                           else "int8").total,
                                          "file_bytes": path.stat().st_size,
                                          "flash": path.stat().st_size + m4.runtime_flash, "macs": macs[name]}
        hop_ms = 1000 * 512 / 2000
        base = rows["dense fp32"]["event_f1"]
        ours_int8, tp_int8 = rows["ours int8"], rows["torch_pruning int8"]
        result = {
            "device": m4.name, "limits": {"flash": m4.flash, "sram": m4.sram, "runtime_flash": m4.runtime_flash},
            "ram_budget": fields["ram"],
            "rows": rows, "window_hop_ms": hop_ms, "torch_pruning_ratio": tp_ratio, "prune_seconds": prune_s,
            "checks": {
                "ours_int8_fits": ours_int8["arena"] <= fields["ram"] and ours_int8["flash"] <= m4.flash,
                "dense_fp32_does_not_fit": rows["dense fp32"]["arena"] > m4.sram or rows["dense fp32"]["flash"] > m4.flash,
                "drop_points": base - ours_int8["event_f1"],
                "arena_ours_over_tp": ours_int8["arena"] / tp_int8["arena"],
                "macs_ours_over_tp": macs["ours"] / macs["torch_pruning"],
            },
            "load_before_timing": os.getloadavg(), "int8_parity": parity,
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"Cortex-M4 class: {m4.flash:,} B flash ({m4.runtime_flash:,} B runtime allowance), {m4.sram:,} B SRAM")
        print(f"{'model':22s} {'F1':>6s} {'AUC':>6s} {'arena':>9s} {'pred.':>9s} {'flash':>9s} {'MACs':>10s}")
        for k, r in rows.items():
            print(f"{k:22s} {r['event_f1']:6.1f} {r['auc']:6.1f} {r['arena']:9,d} {r['predicted_arena']:9,d} "
                  f"{r['flash']:9,d} {r['macs']:10,.0f}")
        print(json.dumps(result["checks"], default=float), f"load {os.getloadavg()}", flush=True)
        for name, p in parity.items():
            print(f"INT8 file of {name}: {p['within_one_step']:.1%} of outputs within one step of its fake-quant "
                  f"reference (max {p['max_steps']:.2f} steps)")
        if args.no_latency:
            return
        lite = get_runtime("litert").open(files["dense"]["int8"])
        q = lite.interp.get_input_details()[0]
        xq = np.clip(np.round(x.numpy() / q["quantization"][0]) + q["quantization"][1], -128, 127).astype(np.int8)
        arts = {"dense ORT fp32": Artifact("onnxruntime", files["dense"]["onnx"])}
        for name in ("dense", "ours"):
            arts[f"{name} ORT fp32"] = Artifact("onnxruntime", files[name]["onnx"])
            arts[f"{name} LiteRT fp32"] = Artifact("litert", files[name]["fp32"])
            arts[f"{name} LiteRT int8"] = Artifact("litert", files[name]["int8"], inputs=(torch.from_numpy(xq),))
            arts[f"{name} TFLM fp32"] = Artifact("tflm", files[name]["fp32"])
            arts[f"{name} TFLM int8"] = Artifact("tflm", files[name]["int8"])
        with timing_lock():  # only the timing waits for the machine's timing lock
            load_before = os.getloadavg()
            lat = measure_interleaved(arts, x, threads=1, rounds=args.rounds, runs=5, warmup=2)
        result["latency_ms"] = {k: v.ms for k, v in lat.items()}
        result["load_during_timing"], result["load_after"] = load_before, os.getloadavg()
        result["seconds"] = time.time() - started
        (out / "results.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"latency per window (ms, batch 1, 1 thread, interleaved; hop {hop_ms:.0f} ms):")
        for k, v in lat.items():
            print(f"  {k:22s} {v.ms:8.3f}")
        print(f"load during timing {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
