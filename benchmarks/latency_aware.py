"""Hardware-aware pruning on ONNX Runtime: a 2x latency target met on the runtime, against MAC-driven pruning.

For torchvision resnet18 and mobilenet_v2 (random init, seed 0; the weights' values do not change
latency) at 1x3x224x224, ONNX Runtime CPU, 2 intra-op threads:

* ours: ``edgeprune.targets.build_table`` on this machine, then
  ``edgeprune.strategies.latency_search.prune_to_latency(Budget(speedup=2.0))`` (allocate on fast steps, export, measure,
  tighten, repeat);
* plain magnitude: ``edgeprune.prune(strategy="uniform", criterion="l2")`` with the ratio found by
  bisection so its MACs match ours (within one channel per layer);
* Torch-Pruning 1.6 ``MetaPruner`` with ``GroupMagnitudeImportance(p=2)`` and ``round_to=16``, the
  pruning ratio found the same way.

All four models of one architecture are then measured together, interleaved run by run
(``edgeprune.targets.measured``); speed-up = unpruned / pruned, both from that one session.

    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/latency_aware.py
    .venv/bin/python benchmarks/latency_aware.py --quick          # 128x128, fewer runs: a smoke test
    flock /tmp/edgeprune-timing.lock .venv/bin/python benchmarks/latency_aware.py --mnist

``--mnist``: on the ``mnist`` task's CNN (pretrained, seeds 0 and 1), a MAC-budget plan (global L2
ranking, ratio fitted by ``edgeprune.budget.fit_ratio`` to ``--mnist-macs`` of the MACs) is
measured; the latency-aware plan is then made for the speed-up that plan measured (so at most
its latency, verified on ONNX Runtime); both get the same fine-tuning (``task.train``, 3 epochs,
recipe lr / 10, same seed) and their validation accuracies are compared.

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
from edgeprune.budget import Budget
from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency
from edgeprune.targets import check_plan
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
    measured_ms: float | None  # None: predicted only
    speedup: float
    speedup_per_mac_reduction: float
    warnings: int
    note: str = ""


def macs_of(model: nn.Module, x: torch.Tensor) -> int:
    return count_macs(model.eval(), x).total


def bisect(make, target_macs: int, x: torch.Tensor, hi: float = 0.9, iterations: int = 12):
    """Bracket ``target_macs`` by pruning ratio: ``(ratio, model)`` with the most MACs at or below it,
    and ``(ratio, model)`` with the fewest MACs above it (``None`` when the unpruned model is below)."""
    lo, below, above = 0.0, None, None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        m = make(mid)
        if macs_of(m, x) <= target_macs:
            hi, below = mid, (mid, m)
        else:
            lo, above = mid, (mid, m)
    if below is None:
        below = (hi, make(hi))
    return below, above


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
                                              probe_threads=args.probe_threads,
                                              rounds=args.rounds), log=lambda m: log(f"  [{arch}] {m}"))
    table.save(Path(args.out) / f"table-{arch}-{args.size}.json")
    log(f"[{arch}] table built in {time.time() - started:.0f}s")
    predictor = LatencyPredictor(table)
    ceiling = table_ceiling(model, x, predictor, args.speedup)
    log(f"[{arch}] table ceiling: the most MACs a fast-step plan keeps at a predicted {args.speedup}x is "
        f"{ceiling['mac_reduction']:.2f}x fewer (predicted speed-up / MAC reduction {ceiling['ratio']:.2f})")
    measure = MeasureConfig(threads=args.threads, rounds=args.rounds, runs=5, exporter="torchscript")
    ours = prune_to_latency(model, x, predictor, Budget(speedup=args.speedup), LatencySearch(max_attempts=4),
                            measure=measure, log=lambda m: log(f"  [{arch}] {m}"))
    dense_macs = macs_of(model, x)
    ours_macs = macs_of(ours.model, x)
    log(f"[{arch}] ours: MACs {dense_macs / ours_macs:.2f}x lower, met={ours.met}")
    deep = None
    if args.depth:  # depth beside width: residual blocks may go whole (LatencySearch(depth=True))
        deep = prune_to_latency(model, x, predictor, Budget(speedup=args.speedup),
                                LatencySearch(max_attempts=4, depth=True), measure=measure,
                                log=lambda m: log(f"  [{arch}] depth: {m}"))
        log(f"[{arch}] ours depth+width: blocks dropped {deep.plan.blocks}, MACs "
            f"{dense_macs / macs_of(deep.model, x):.2f}x lower, met={deep.met}")

    (r_uni, uniform), _ = bisect(lambda r: edgeprune.prune(model, x, r, criterion="l2", strategy="uniform").model,
                                 ours_macs, x)
    # round_to=16 moves channel counts in jumps: bracket our MACs from both sides
    (r_tp, tpm), tp_above = bisect(lambda r: torch_pruning_model(model, x, r, classifier), ours_macs, x)
    uniform_plan = edgeprune.prune(model, x, r_uni, criterion="l2", strategy="uniform").plan
    log(f"[{arch}] uniform ratio {r_uni:.3f}, torch-pruning ratio {r_tp:.3f}")

    variants = {"unpruned": model, "ours (latency-aware)": ours.model, "uniform L2": uniform,
                "torch-pruning round_to=16": tpm}
    notes = {"uniform L2": f"ratio {r_uni:.3f}", "torch-pruning round_to=16": f"ratio {r_tp:.4f}",
             "ours (latency-aware)": f"{len(ours.attempts)} attempt(s), met={ours.met}"}
    if deep is not None:
        variants["ours (depth + width)"] = deep.model
        notes["ours (depth + width)"] = (f"{len(deep.attempts)} attempt(s), met={deep.met}, "
                                         f"blocks {','.join(deep.plan.blocks) or 'none'}")
    if tp_above is not None and macs_of(tp_above[1], x) < dense_macs:
        variants["torch-pruning round_to=16 (next ratio down)"] = tp_above[1]
        notes["torch-pruning round_to=16 (next ratio down)"] = f"ratio {tp_above[0]:.4f}"
    got = measure_models(variants, x, threads=args.threads, rounds=args.final_rounds, runs=5,
                         exporter="torchscript", spinning=spinning)
    predictor.refit()
    warnings = {"ours (latency-aware)": len(check_plan(ours.plan, predictor).warnings),
                "uniform L2": len(check_plan(uniform_plan, predictor).warnings)}
    rows = []
    dense_ms = got["unpruned"].ms
    for name, m in variants.items():
        macs = macs_of(m, x)
        red = dense_macs / macs
        speed = dense_ms / got[name].ms
        rows.append(Row(arch, name, macs, round(red, 3), round(predictor.predict_model(m), 3),
                        round(got[name].ms, 3), round(speed, 3), round(speed / red, 3), warnings.get(name, 0),
                        notes.get(name, "")))
    rows.append(Row(arch, "table ceiling (predicted only)", ceiling["macs"], round(ceiling["mac_reduction"], 3),
                    round(ceiling["predicted_ms"], 3), None, round(ceiling["speedup"], 3),
                    round(ceiling["ratio"], 3), 0, "most MACs kept at the predicted target, equal scores"))
    return rows


def table_ceiling(model: nn.Module, x: torch.Tensor, predictor: LatencyPredictor, speedup: float) -> dict:
    """The plan on fast steps that keeps the most MACs at a predicted ``speedup`` (every unit scored alike):
    how far above the MAC ratio this target's kernels let any channel plan go, by the table."""
    from edgeprune.targets import allocate

    groups = edgeprune.analyze(model, x).groups
    flat = {g.name: torch.ones(g.size) for g in groups}
    alloc = allocate(predictor, groups, flat, predictor.dense_ms() / speedup, value="compute")
    kept, full = predictor.macs(alloc.counts), predictor.macs({})
    reduction = full / kept
    predicted = predictor.dense_ms() / alloc.predicted_ms
    return {"macs": int(kept * macs_of(model, x) / full), "mac_reduction": reduction,
            "predicted_ms": alloc.predicted_ms, "speedup": predicted, "ratio": predicted / reduction}


def interpolated_torch_pruning(rows: list[Row], arch: str) -> str | None:
    """Torch-Pruning's speed-up at our MAC reduction, linear between its two bracketing ratios."""
    by = {r.variant: r for r in rows if r.model == arch}
    ours, a = by.get("ours (latency-aware)"), by.get("torch-pruning round_to=16")
    b = by.get("torch-pruning round_to=16 (next ratio down)")
    if ours is None or a is None or b is None or a.mac_reduction == b.mac_reduction:
        return None
    t = (ours.mac_reduction - b.mac_reduction) / (a.mac_reduction - b.mac_reduction)
    tp = b.speedup + t * (a.speedup - b.speedup)
    return (f"{arch}: Torch-Pruning round_to=16 interpolated to our {ours.mac_reduction:.2f}x fewer MACs: "
            f"{tp:.2f}x; ours {ours.speedup:.2f}x")


def run_mnist(args, log) -> list[dict]:
    from edgeprune.budget import Budget, fit_ratio
    from edgeprune.strategies import global_ranking, make_plan
    from edgeprune.surgery import apply_plan, named_tensors
    from edgeprune.targets import group_scores
    from edgeprune.tasks import get_task, pretrained

    task = get_task("mnist")
    out = []
    for seed in args.mnist_seeds:
        model = pretrained("mnist", seed=seed).eval()
        x = task.example_input()
        base_acc = task.evaluate(model)
        table = build_table(model, x, TableConfig(threads=args.mnist_threads, runs=args.runs, warmup=2, stat="min",
                                                  passes=args.passes, spinning=args.spinning, levels=6,
                                                  probe_threads=args.probe_threads,
                                                  rounds=args.rounds))
        predictor = LatencyPredictor(table)
        groups = edgeprune.analyze(model, x).groups
        scores = group_scores(model, groups)
        tensors = named_tensors(model)
        fit = fit_ratio(lambda r: make_plan(groups, global_ranking(groups, scores, r), tensors),
                        Budget(macs=args.mnist_macs).targets(model, x), model, x)
        mac_model = apply_plan(copy.deepcopy(model), fit.plan)
        first = measure_models({"unpruned": model, "macs": mac_model}, x, threads=args.mnist_threads,
                               rounds=args.rounds, runs=5, exporter="torchscript", spinning=args.spinning)
        speedup = first["unpruned"].ms / first["macs"].ms
        log(f"[mnist seed {seed}] MAC-budget plan: ratio {fit.ratio:.3f}, measured speed-up {speedup:.2f}x; "
            f"check: {check_plan(fit.plan, predictor).summary()}")
        ours = prune_to_latency(model, x, predictor, Budget(speedup=max(1.0, speedup)), LatencySearch(max_attempts=4),
                                measure=MeasureConfig(threads=args.mnist_threads, rounds=args.rounds, runs=5,
                                                      exporter="torchscript"),
                                log=lambda m: log(f"  [mnist seed {seed}] {m}"))
        final = measure_models({"unpruned": model, "macs": mac_model, "latency": ours.model}, x,
                               threads=args.mnist_threads, rounds=args.final_rounds, runs=5,
                               exporter="torchscript", spinning=args.spinning)
        row = {"seed": seed, "unpruned_acc": base_acc, "mac_ratio": fit.ratio, "verified": ours.met}
        for name, m in (("macs", mac_model), ("latency", ours.model)):
            before = task.evaluate(m)
            task.train(m, epochs=args.mnist_epochs, lr=task.recipe.lr / 10, seed=seed)
            m.eval()
            row[name] = {"macs": macs_of(m, x), "ms": round(final[name].ms, 4),
                         "speedup": round(final["unpruned"].ms / final[name].ms, 3),
                         "acc_before_ft": round(before, 2), "acc_after_ft": round(task.evaluate(m), 2)}
        row["unpruned_ms"] = round(final["unpruned"].ms, 4)
        row["unpruned_macs"] = macs_of(model, x)
        log(f"[mnist seed {seed}] {row}")
        out.append(row)
    return out


def mnist_markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"mnist task CNN (1x1x28x28), ONNX Runtime {meta['onnxruntime']}, {meta['mnist_threads']} thread(s), "
             f"spinning {'on' if meta['spinning'] else 'off'}; fine-tuning {meta['mnist_epochs']} epochs at "
             f"recipe lr/10; load before/after: {meta['load_before']} / {meta['load_after']}", "",
             "| seed | plan | MACs | measured ms | speed-up | acc. before FT | acc. after FT | unpruned acc. |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, label in (("macs", f"MAC budget (global L2, ratio {r['mac_ratio']:.3f})"),
                            ("latency", f"latency-aware (verified={r['verified']})")):
            v = r[name]
            lines.append(f"| {r['seed']} | {label} | {v['macs'] / 1e6:.2f}M / {r['unpruned_macs'] / 1e6:.2f}M "
                         f"| {v['ms']:.3f} / {r['unpruned_ms']:.3f} | {v['speedup']:.2f}x | {v['acc_before_ft']:.2f} "
                         f"| {v['acc_after_ft']:.2f} | {r['unpruned_acc']:.2f} |")
    return "\n".join(lines)


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [f"Input 1x3x{meta['size']}x{meta['size']}, ONNX Runtime {meta['onnxruntime']} CPU, "
             f"{meta['threads']} threads, spinning {'on' if meta['spinning'] else 'off'}; "
             f"load before/after: {meta['load_before']} / {meta['load_after']}", "",
             "| model | variant | GMACs | MAC reduction | predicted ms | measured ms | speed-up "
             "| speed-up / MAC reduction | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.variant} | {r.macs / 1e9:.3f} | {r.mac_reduction:.2f}x | "
                     f"{r.predicted_ms:.2f} | {'-' if r.measured_ms is None else f'{r.measured_ms:.2f}'} | {r.speedup:.2f}x | "
                     f"{r.speedup_per_mac_reduction:.2f} | {r.note} |")
    lines.append("")
    lines += [line for arch in dict.fromkeys(r.model for r in rows) if (line := interpolated_torch_pruning(rows, arch))]
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
    parser.add_argument("--probe-threads", type=int, default=1, help="threads of the staircase sweeps")
    parser.add_argument("--quick", action="store_true", help="128x128, fewer runs (a smoke test)")
    parser.add_argument("--depth", action="store_true", help="also search depth + width (residual blocks dropped whole)")
    parser.add_argument("--mnist", action="store_true", help="run the mnist accuracy comparison instead")
    parser.add_argument("--mnist-macs", type=float, default=0.4, help="MAC budget of the MAC-budget plan")
    parser.add_argument("--mnist-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--mnist-threads", type=int, default=1)
    parser.add_argument("--out", default="runs/latency_aware")
    args = parser.parse_args()
    if args.quick:
        args.size, args.runs, args.passes, args.levels, args.rounds, args.final_rounds = 128, 5, 1, 4, 5, 8
    Path(args.out).mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    meta = {"size": args.size, "threads": args.threads, "spinning": args.spinning, "onnxruntime": ort.__version__,
            "torch": torch.__version__, "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    started = time.time()
    if args.mnist:
        meta.update(mnist_threads=args.mnist_threads, mnist_epochs=args.mnist_epochs, mnist_macs=args.mnist_macs)
        results = run_mnist(args, log=lambda m: print(m, flush=True))
        meta["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
        text = mnist_markdown(results, meta)
        print(text)
        (Path(args.out) / "mnist.md").write_text(text + "\n")
        (Path(args.out) / "mnist.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1))
        return
    rows: list[Row] = []
    for arch in args.models:
        rows += run_one(arch, args, log=lambda m: print(m, flush=True))
        partial = {**meta, "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
                   "seconds": round(time.time() - started)}
        (Path(args.out) / "results.md").write_text(markdown(rows, partial) + "\n")  # each model as it is done
    meta["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    meta["seconds"] = round(time.time() - started)
    text = markdown(rows, meta)
    print(text)
    (Path(args.out) / "results.md").write_text(text + "\n")
    (Path(args.out) / "results.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]},
                                                            indent=1))


if __name__ == "__main__":
    main()
