"""Does the pipeline's met/missed verdict hold on a busy machine? (issue 13, must-show 3)

Starts a CPU hog on one core (``python -c "while True: pass"``), runs the ``edgeprune prune``
pipeline on torchvision resnet18 with ``--target speedup=2x --threads 2`` (its before/after latency
comes from one interleaved session of the two ONNX files, ``edgeprune.run.verdict``), then measures
the original's ONNX file and the run's ``model.onnx`` again, independently, interleaved in this
process, and checks that the two speed-ups agree within 10%. Stops the hog, also on error.

    PYTHONPATH=src .venv/bin/python benchmarks/runtime_verdict.py [--threads 2] [--size 224] [--out runs/verdict]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGREE_WITHIN = 0.10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--target", default="speedup=2x")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the independent measurement")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--no-hog", action="store_true", help="run without the CPU hog (for comparison)")
    args = parser.parse_args(argv)

    from edgeprune.export.onnx import export_onnx
    from edgeprune.run import recipe_from_mapping, run_pipeline
    from edgeprune.run.inputs import build_model
    from edgeprune.runtimes import Artifact, measure_interleaved
    from edgeprune.specs import default_input

    load = os.getloadavg()[0]
    print(f"{args.model} --target {args.target} --threads {args.threads}, input {args.size} px; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} at start; hog: {'off' if args.no_hog else 'one core'}")
    hog = None if args.no_hog else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with tempfile.TemporaryDirectory(prefix="edgeprune-verdict-") as tmp:
            out = Path(args.out) if args.out else Path(tmp) / "run"
            recipe = recipe_from_mapping({"model": args.model, "target": args.target, "threads": args.threads,
                                          "input_shape": [1, 3, args.size, args.size]})
            started = time.perf_counter()
            outcome = run_pipeline(recipe, out, force=True)
            m = outcome.metrics
            lat = m["latency"]
            print(f"pipeline ({time.perf_counter() - started:.0f} s): {lat['original_ms']:.2f} -> "
                  f"{lat['pruned_ms']:.2f} ms = {lat['speedup']:.2f}x on {lat['runtime']} {lat['version']}, "
                  f"{lat['threads']} threads, {lat['precision']}; verdict {m['status']} (exit {m['exit_code']}); "
                  f"isolated profiles said {m['profiles']['before']['latency_onnx']['median_ms']:.2f} -> "
                  f"{m['profiles']['after']['latency_onnx']['median_ms']:.2f} ms")
            original = build_model(args.model, 0).eval()
            example = default_input(original, (1, 3, args.size, args.size))
            orig_onnx = export_onnx(original, example, Path(tmp) / "original.onnx", exporter="torchscript")
            got = measure_interleaved({"original": Artifact("onnxruntime", orig_onnx),
                                       "pruned": Artifact("onnxruntime", out / "model.onnx")}, example,
                                      threads=args.threads, rounds=args.rounds, runs=5)
            independent = got["original"].ms / got["pruned"].ms
            print(f"independent interleaved: {got['original'].ms:.2f} -> {got['pruned'].ms:.2f} ms = "
                  f"{independent:.2f}x ({args.rounds} rounds x 5 runs)")
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    gap = abs(lat["speedup"] - independent) / independent
    ok = gap <= AGREE_WITHIN
    print(json.dumps({"pipeline_speedup": lat["speedup"], "independent_speedup": independent, "gap": gap,
                      "status": m["status"], "load_end": os.getloadavg()[0]}))
    print(f"pipeline vs independent: {gap:.1%} apart (limit {AGREE_WITHIN:.0%}): {'OK' if ok else 'DISAGREE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
