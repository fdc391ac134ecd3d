"""How repeatable is one latency figure? Five measurements of torchvision resnet18 on ONNX Runtime.

Each measurement is what ``edgeprune profile`` does for latency: a fresh ONNX Runtime session
(2 intra-op threads, sequential), warm-up runs, then timed runs, reporting the median. The spread
max/min of the five medians should stay below 1.10 on a quiet machine.

    .venv/bin/python benchmarks/latency_stability.py [--runs 50] [--warmup 10] [--threads 2] [--repeats 5] [--spin]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from edgeprune.export.onnx import export_onnx
from edgeprune.measure.latency import ort_latency
from edgeprune.specs import random_inputs

TARGET_SPREAD = 1.10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--spin", action="store_true", help="let ORT's idle threads busy-wait (ORT's default)")
    args = parser.parse_args(argv)

    model = torchvision.models.resnet18().eval()
    example = torch.randn(1, 3, args.size, args.size)
    inputs, _ = random_inputs(example, seed=0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torchvision resnet18, input 1x3x{args.size}x{args.size}, onnxruntime, {args.threads} threads, "
          f"spinning {'on' if args.spin else 'off'}, {args.warmup} warm-up + {args.runs} timed runs per measurement; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at start")
    medians = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, example, Path(tmp) / "resnet18.onnx")
        for i in range(args.repeats):
            started = time.perf_counter()
            stats = ort_latency(path, inputs, {}, threads=args.threads, runs=args.runs, warmup=args.warmup,
                                 spin=args.spin)
            medians.append(stats.median_ms)
            print(f"measurement {i + 1}: median {stats.median_ms:.2f} ms, p95 {stats.p95_ms:.2f} ms, "
                  f"min {stats.min_ms:.2f} ms ({time.perf_counter() - started:.1f} s)")
    spread = max(medians) / min(medians)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    verdict = "OK" if spread < TARGET_SPREAD else "ABOVE TARGET"
    print(f"medians {', '.join(f'{m:.2f}' for m in medians)} ms; spread max/min = {spread:.3f} "
          f"(target < {TARGET_SPREAD}): {verdict}; load average {load_end:.2f} at end")
    return 0 if spread < TARGET_SPREAD else 1


if __name__ == "__main__":
    sys.exit(main())
