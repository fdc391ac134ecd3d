"""Beyond one process: the mnist sensitivity scan serial vs on Ray workers, and one fine-tuning epoch
on 1 vs 2 DistributedDataParallel processes, side by side in one run.

    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/scale.py            # 2 Ray workers, 2 ranks
    .venv/bin/python benchmarks/scale.py --workers 4 --nproc 4 --ratios 0.1,0.3,0.5,0.7,0.9

Scan: ``edgeprune.strategies.sensitivity.scan`` of the mnist task at ``--ratios``, in this process at
1 thread (the baseline) and as one Ray task per point on a local cluster of ``--workers`` CPUs (1
thread each), interleaved ``--repeats`` times; the curves must be identical. Reported apart: the
cluster's start, the first (cold) Ray scan, which starts the workers and imports torch in each, and the
warm scans; the per-task overhead is the wall time of a round of no-op tasks over their count, and the
extra time per evaluation of the warm Ray scan over the serial one.

Fine-tuning: one epoch of the pruned ``--ddp-task`` model (mnist; ratio 0.3), launched by torchrun with 1 and with
``--nproc`` ranks (gloo, 1 thread per rank, each rank on its slice of every global batch), interleaved;
the ranks' parameters must agree; the accuracy is close to the 1-rank run's (on CPU each rank's
BatchNorm normalises its own slice: torch's SyncBatchNorm needs GPUs). Reported: the training
seconds of rank 0 (without start-up) and the wall time of the launch.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import torch


def _scan(inputs, ratios, evaluator=None):
    from edgeprune.criteria import get_criterion
    from edgeprune.strategies.sensitivity import scan
    from edgeprune.strategies.session import Session

    session = Session(inputs.example, get_criterion("l2"), "l2", data=inputs.train, evaluate=inputs.evaluate,
                      evaluator=evaluator)
    started = time.perf_counter()
    curves = scan(session, inputs.model, session.score(inputs.model), ratios)
    return curves, time.perf_counter() - started, session.meter.evaluations


def bench_scan(args) -> None:
    from edgeprune.run.inputs import resolve_inputs
    from edgeprune.scale import Evaluator
    from edgeprune.scale.ray_executor import RayExecutor

    ratios = tuple(float(r) for r in args.ratios.split(","))
    fresh = lambda: resolve_inputs(args.task, args.task, seed=0)  # noqa: E731 - a fresh loader per scan
    started = time.perf_counter()
    executor = RayExecutor(threads=1, num_cpus=args.workers, retries=0)
    start_s = time.perf_counter() - started
    try:
        evaluator = Evaluator(executor, args.task)
        rows = []
        for i in range(args.repeats + 1):  # round 0 is the cold Ray scan
            serial, serial_s, evaluations = _scan(fresh(), ratios)
            on_ray, ray_s, _ = _scan(fresh(), ratios, evaluator)
            assert on_ray.to_dict() == serial.to_dict(), "the Ray scan's curves differ from the serial scan's"
            rows.append((serial_s, ray_s, evaluations))
        n = 20
        started = time.perf_counter()
        executor.map(_noop, None, list(range(n)), [f"noop {i}" for i in range(n)])
        noop_s = (time.perf_counter() - started) / n
    finally:
        executor.close()
    print(f"\n## sensitivity scan of {args.task} at ratios {ratios}: serial (1 thread) vs Ray ({args.workers} "
          f"workers x 1 thread); curves identical in every round")
    print(f"cluster start {start_s:.1f} s; no-op task round trip {noop_s * 1000:.0f} ms per task ({n} tasks)")
    print("| round | evaluations | serial s | Ray s | serial / Ray | Ray extra s per evaluation |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, (s, r, n_eval) in enumerate(rows):
        points = n_eval - 1  # the base accuracy is measured here in both
        extra = (r - s / args.workers) / max(points, 1)
        print(f"| {'cold (workers start)' if i == 0 else f'warm {i}'} | {points} | {s:.1f} | {r:.1f} | {s / r:.2f}x "
              f"| {extra:.2f} |")


def _noop(shared, item):
    return item


def bench_ddp(args) -> None:
    from edgeprune.api import prune
    from edgeprune.run.inputs import resolve_inputs
    from edgeprune.scale.ddp import Launch, finetune_distributed

    task = args.ddp_task
    inputs = resolve_inputs(task, task, seed=0)
    pruned = prune(inputs.model, inputs.example, 0.3).model
    job = {"model": task, "seed": 0, "data": task, "batch_size": None, "input_shape": None,
           "val_fraction": 0.1, "evaluate": None, "epochs": 1, "lr": 1e-3, "distill": False}
    rows = []
    for _ in range(args.repeats):
        for nproc in (1, args.nproc):
            model = copy.deepcopy(pruned)
            started = time.perf_counter()
            got = finetune_distributed(model, Launch(nproc=nproc), job, timeout=900)
            rows.append((nproc, got["seconds"], time.perf_counter() - started, got["rank_max_abs_diff"],
                         inputs.evaluate(model), got["steps"]))
    print(f"\n## one fine-tuning epoch of the pruned {task} model (ratio 0.3): 1 vs {args.nproc} ranks "
          f"(torchrun, gloo, 1 thread per rank)")
    print("| ranks | steps | training s (rank 0) | launch wall s | ranks' max param diff | accuracy |")
    print("|---:|---:|---:|---:|---:|---:|")
    for nproc, train_s, wall_s, diff, acc, steps in rows:
        print(f"| {nproc} | {steps} | {train_s:.1f} | {wall_s:.1f} | {diff:.1g} | {acc:.2f} |")
    one = [r[1] for r in rows if r[0] == 1]
    many = [r[1] for r in rows if r[0] == args.nproc]
    print(f"training time 1 rank / {args.nproc} ranks: {min(one) / min(many):.2f}x (best of {args.repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mnist")
    parser.add_argument("--ddp-task", default="mnist", help="the model fine-tuned on ranks")
    parser.add_argument("--ratios", default="0.2,0.4,0.6,0.8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", choices=("scan", "ddp"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.skip != "scan":
        bench_scan(args)
    if args.skip != "ddp":
        bench_ddp(args)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
