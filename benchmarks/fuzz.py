"""The architecture fuzzer on a large budget: N generated models through the oracle, counted.

    nice -n 5 python benchmarks/fuzz.py --seeds 1000 [--start 0] [--dynamo-every 20] [--workers 1]

Each seed's model (tests/fuzz/generator.py: residual adds, concat, split/chunk, grouped and
depthwise convs, SE gates, BN/GN/LN, flatten into Linear, attention with and without GQA, two
inputs, tuple/dict outputs, literal reshapes, tied weights, modules called twice, buffers, in-place
ops) goes through tests/fuzz/oracle.py: dead units removed with outputs unchanged (1e-5), each
group alone too, both attention paths; a live prune at 0.3 that runs, keeps its output shapes,
drops MACs, matches its ONNX export on ONNX Runtime and replays from the plan's JSON. ONNX is
exported with TorchScript (0.1 s a model) and, every ``--dynamo-every`` seeds, with the default
exporter (dynamo first, ~3 s).

Prints: models generated; pruned correctly (and how many of them had nothing to prune); refused by
name; corruptions from known defects pinned by xfail(strict=True) tests; silent corruptions (must
be 0, each with its seed); the distribution of refusal reasons and of the reasons groups were
kept whole; the regression tests the fuzzer produced (tests/test_fuzz_regressions.py).
"""
from __future__ import annotations

import argparse
import ast
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _one(seed_and_exporter: tuple[int, str]):
    import torch

    from tests.fuzz.campaign import run_seed

    torch.set_num_threads(1)
    seed, exporter = seed_and_exporter
    started = time.perf_counter()
    outcome, description = run_seed(seed, exporter=exporter)
    return outcome, description, time.perf_counter() - started


def regression_tests() -> list[str]:
    """The tests in tests/test_fuzz_regressions.py, with their xfail mark when they carry one."""
    path = ROOT / "tests" / "test_fuzz_regressions.py"
    tree = ast.parse(path.read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            xfail = any("xfail" in ast.unparse(d) for d in node.decorator_list)
            out.append(f"{path.relative_to(ROOT)}::{node.name}" + ("  [xfail(strict): known defect]" if xfail else ""))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--dynamo-every", type=int, default=20, help="every k-th seed exports with the default exporter")
    parser.add_argument("--workers", type=int, default=1, help="processes (each one thread)")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    seeds = range(args.start, args.start + args.seeds)
    jobs = [(s, "auto" if args.dynamo_every and s % args.dynamo_every == 0 else "torchscript") for s in seeds]
    started = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(_one, jobs, chunksize=4)
    else:
        results = []
        for i, job in enumerate(jobs):
            results.append(_one(job))
            if (i + 1) % 50 == 0:
                print(f"  ... {i + 1}/{len(jobs)} seeds, {time.perf_counter() - started:.0f} s", flush=True)
    wall = time.perf_counter() - started
    status = collections.Counter(o.status for o, _, _ in results)
    refusals = collections.Counter(_reason(o.detail) for o, _, _ in results if o.status == "refused")
    kept = collections.Counter(_reason(r) for o, _, _ in results for r in o.skipped.values())
    nothing = sum(1 for o, _, _ in results if o.status == "correct" and not o.dead_removed and not o.live_removed)
    ratios = sorted(o.mac_ratio for o, _, _ in results if o.status == "correct" and o.live_removed)
    print(f"fuzz: seeds {args.start}..{args.start + args.seeds - 1}, {wall:.0f} s ({wall / len(jobs):.2f} s a model), "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"  generated                 {len(results)}")
    print(f"  pruned correctly          {status['correct']}  (of which nothing prunable: {nothing}; "
          f"live prune at 0.3: median MACs x{ratios[len(ratios) // 2]:.3f})" if ratios else "")
    no_onnx = sum(1 for o, _, _ in results if o.status == "correct" and not o.onnx_checked)
    print(f"    ONNX parity checked on {status['correct'] - no_onnx} of them; the rest's unpruned model does not "
          f"export with that exporter either")
    print(f"  refused by name           {status['refused']}")
    print(f"  known defect (xfail test) {status['known']}")
    print(f"  silently corrupted        {status['corrupt']}")
    for o, description, _ in results:
        if o.status in ("corrupt", "known"):
            print(f"    [{o.status}] {description}\n        {o.detail[:300]}")
    print("refusal reasons (a whole model refused):")
    for reason, n in refusals.most_common():
        print(f"  {n:5d}  {reason}")
    print("reasons groups were kept whole (in models pruned correctly; top 15):")
    for reason, n in kept.most_common(15):
        print(f"  {n:5d}  {reason}")
    print("regression tests produced:")
    for test in regression_tests():
        print(f"  {test}")
    print(f"constructs: {dict(collections.Counter(k for _, d, _ in results for k in d.split(': ', 1)[1].split(' (')[0].split(' > ')))}")


def _reason(message: str) -> str:
    from tests.fuzz.oracle import reason_key

    return reason_key(message)


if __name__ == "__main__":
    main()
