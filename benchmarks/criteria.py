"""Pruning criteria ranked over a zoo of small trained models, against random and Torch-Pruning.

Every zoo model (``benchmarks/_criteria_zoo.py``: residual 1D CNN, residual 2D CNN, MobileNet-style
CNN, MLP, ViT) is pruned with the ``uniform`` strategy to at most 1/2 and 1/4 of its MACs (the ratio
bisected by ``edgeprune.budget.fit_ratio``; uniform widths do not depend on the criterion, so every
criterion of ours keeps the same widths and only *which* units survive differs). BatchNorm
statistics are re-estimated on 512 training samples after the cut (Torch-Pruning's result too),
the one-shot accuracy is measured, then every model gets the same fine-tuning (``epochs`` of Adam,
cosine decay from ``lr``, the seed's data order) and is measured again on the 1,000-sample val split.

Methods: our criteria by registry name (``l2``, ``l1``, ``bn``, ``taylor`` on the 512 samples,
``random``, ...); three other ways to combine a unit's slots, kept for the record: ``l2-balanced``
(each slot's per-unit L2 norms divided by their mean over units, then averaged over slots:
``Magnitude(normalize="mean")``),
``l2-raw`` (the mean of each slot's L2 norm), ``l2-buffers`` (the scores before issue 19, which
also averaged the norms of BatchNorm running statistics and biases); and ``tp``: Torch-Pruning 1.6
``MetaPruner`` with ``GroupMagnitudeImportance(p=2)``, uniform per layer, classifier ignored, its
ratio bisected to the same MAC target (our ``l2`` ranks units as its importance does; its widths
differ by a unit or so). On the ViT: ``l2-hd`` is ``l2`` with ``head_dims=True`` (every head cut to
the same number of dims, as Torch-Pruning's default), ``l2-hd-sdpa`` that cut without its q/k rescale
(SDPA's scale of the cut head dim, as Torch-Pruning's cut leaves it), ``l2-shared-hd`` the same
positions cut in every head, ``tp-heads`` Torch-Pruning removing whole heads. To separate criterion
from allocation: ``tp-at-l2`` is Torch-Pruning bisected to at most the MACs our ``l2`` cut kept, and
``l2-at-tp`` (``-sdpa``: without the q/k rescale) our ``l2`` choosing the units at Torch-Pruning's widths.
A name ending in ``-global`` uses the ``global`` strategy instead of ``uniform``. Seeds change the
fine-tuning data order and the random ranking; the trained model
is the same. Paired columns: accuracy minus random's / Torch-Pruning's on the same model, target
and seed, mean ± standard error over seeds.

    .venv/bin/python benchmarks/criteria.py --out runs/criteria            # the zoo, 3 seeds, 2x and 4x
    .venv/bin/python benchmarks/criteria.py --models res1d --seeds 0 --targets 0.25 --epochs 1   # quick

Runs are appended to ``--out``/runs.jsonl as they finish; a rerun skips those already there, so
processes started on different ``--models`` can be merged (``--merge DIR ...``) and the table made
from all of them. ``results.md`` holds the table.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _criteria_zoo as zoo  # noqa: E402

import edgeprune as ep  # noqa: E402
from edgeprune.budget import Budget  # noqa: E402
from edgeprune.criteria import CRITERIA, Magnitude, ScoreContext, learnable_slots, slot_unit_sum  # noqa: E402
from edgeprune.measure import count_macs  # noqa: E402
from edgeprune.recover import Finetune, finetune, recalibrate_bn  # noqa: E402

METHODS = ("l2", "l2-balanced", "l2-raw", "l2-buffers", "l1", "bn", "taylor", "random", "tp")
ORDER = ("l2", "l2-hd", "l2-hd-sdpa", "l2-shared-hd", "l2-shared-hd-sdpa", *METHODS[1:], "tp-heads", "l2-at-tp", "l2-at-tp-sdpa", "tp-at-l2")  # the table's row order (l2-hd, tp-heads: ViT runs only)


def _with_buffers(group, ctx: ScoreContext) -> torch.Tensor:
    """The group L2 score as it was before issue 19: every slot, running statistics included."""
    return torch.stack([slot_unit_sum(ctx, s, group.size, 2).sqrt() for s in group.slots]).mean(0)


def _mean_of_norms(group, ctx: ScoreContext) -> torch.Tensor:
    """The mean over weight slots (no buffers, no biases) of each slot's L2 norm of the unit's slice."""
    slots = [s for s in learnable_slots(group, ctx) if not s.tensor.endswith(".bias")]
    return torch.stack([slot_unit_sum(ctx, s, group.size, 2).sqrt() for s in slots]).mean(0)


def _shared_across_partitions(group, ctx: ScoreContext) -> torch.Tensor:
    """``l2`` averaged over a group's partitions: with ``head_dims=True`` every head then loses the
    same positions, as Torch-Pruning's channel groups choose them (its importance averaged over heads)."""
    scores = CRITERIA["l2"](group, ctx)
    if group.partitions < 2:
        return scores
    return scores.view(group.partitions, -1).mean(0).repeat(group.partitions)


VARIANTS = {"l2-balanced": Magnitude(p=2, normalize="mean"), "l2-raw": _mean_of_norms, "l2-buffers": _with_buffers,
            "l2-shared": _shared_across_partitions}


def calibration(entry: zoo.ZooEntry) -> DataLoader:
    sp = zoo.splits(entry.data)
    return DataLoader(TensorDataset(sp.x_train[:512], sp.y_train[:512]), batch_size=128)


def prune_ours(method: str, model, entry, keep: float, seed: int):
    """Our cut; ``l2-hd`` cuts heads within (``head_dims=True``), as Torch-Pruning's default does;
    ``l2-hd-sdpa`` is that cut without its q/k rescale, so the attention takes SDPA's default scale
    of the *cut* head dim, 1/sqrt(d'), as Torch-Pruning's cut of this ViT leaves it (an experiment:
    it changes what the model computes)."""
    strategy = "global" if method.endswith("-global") else "uniform"
    method = method.removesuffix("-global")
    sdpa_scale = method.endswith("-hd-sdpa")
    head_dims = sdpa_scale or method.endswith("-hd")
    method = method.removesuffix("-sdpa").removesuffix("-hd")
    criterion = VARIANTS.get(method, method)
    result = ep.prune(model, zoo.example_input(entry), budget=Budget(macs=keep), strategy=strategy,
                      criterion=criterion, data=calibration(entry), calibration_batches=None, seed=seed,
                      head_dims=head_dims)
    if sdpa_scale:
        plan = ep.plan.Plan.from_dict(result.plan.to_dict())
        plan.groups = [dataclasses.replace(g, rescale=[]) for g in plan.groups]
        pruned = ep.apply_plan(model, plan)
        recalibrate_bn(pruned, calibration(entry), None)
        return pruned, result.stats.get("ratio")
    return result.model, result.stats.get("ratio")


def widths_of(groups, tensors, other: torch.nn.Module) -> dict[str, int]:
    """Units each group keeps in ``other`` (a cut of the same model by another engine), read from the
    shapes of the group's tensors there; every slot must agree (else the structures are not comparable)."""
    sd = other.state_dict()
    kept = {}
    for g in groups:
        got = {g.size * sd[s.tensor].shape[s.dim] // tensors[s.tensor].shape[s.dim] for s in g.slots if s.tensor in sd}
        if len(got) != 1:
            raise ValueError(f"group {g.name}: its slots disagree on the width kept ({sorted(got)})")
        kept[g.name] = got.pop()
    return kept


def prune_at_widths(method: str, model, entry, keep: float, seed: int):
    """Our criterion choosing *which* units, with Torch-Pruning's cut fixing *how many* per group:
    ``l2-at-tp`` (heads cut within where TP cuts them, the exact q/k rescale kept) and
    ``l2-at-tp-sdpa`` (the same without the rescale: SDPA's scale of the cut head dim, as TP leaves it).
    Separates the criterion from the allocation."""
    from edgeprune.strategies.base import lowest
    from edgeprune.graph.groups import make_plan
    from edgeprune.surgery import named_tensors

    other, _ = prune_tp(model, entry, keep)
    x = zoo.example_input(entry)
    within_heads = any(m.head_dim != o.head_dim for m, o in zip(
        (m for m in model.modules() if isinstance(m, zoo.Attention)),
        (o for o in other.modules() if isinstance(o, zoo.Attention))))
    groups = ep.analyze(model, x, head_dims=within_heads).groups
    tensors = named_tensors(model)
    ctx = ScoreContext(tensors, seed=seed)
    name = method.split("-at-")[0]
    criterion = CRITERIA[name] if name in CRITERIA else VARIANTS[name]
    widths = widths_of(groups, tensors, other)
    removals = {g.name: lowest(criterion(g, ctx), g.size - widths[g.name], g.partitions) for g in groups}
    plan = make_plan(groups, removals, tensors)
    if method.endswith("-sdpa"):
        plan.groups = [dataclasses.replace(g, rescale=[]) for g in plan.groups]
    pruned = ep.apply_plan(model, plan)
    recalibrate_bn(pruned, calibration(entry), None)
    return pruned, None


def prune_tp(model, entry, keep: float, heads_kept: int | None = None):
    """Torch-Pruning at ``keep`` of the MACs; on a ViT it narrows every head (its default) or, given
    ``heads_kept``, removes whole heads down to that many per block (the count our cut keeps), so the
    two criteria choose within the same structure."""
    import torch_pruning as tp

    x = zoo.example_input(entry)
    base = count_macs(model, x).total

    def at(ratio: float):
        m = copy.deepcopy(model)
        heads = {mod.qkv: mod.num_heads for mod in m.modules() if isinstance(mod, zoo.Attention)}
        dims = {mod: mod.head_dim for mod in m.modules() if isinstance(mod, zoo.Attention)}
        whole_heads = heads_kept is not None
        options = {}
        if whole_heads:
            options = {"prune_num_heads": True, "prune_head_dims": False,
                       "head_pruning_ratio": 1 - heads_kept / next(iter(heads.values()))}
        pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=[m.classifier], global_pruning=False,
                                      num_heads=heads, **options)
        pruner.step()
        for mod in m.modules():  # TP slices heads or head dims; the forward reads both
            if isinstance(mod, zoo.Attention):
                if whole_heads:
                    mod.head_dim = dims[mod]
                    mod.num_heads = mod.qkv.out_features // (3 * mod.head_dim)
                else:
                    mod.head_dim = mod.qkv.out_features // (3 * mod.num_heads)
        return m

    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):  # the smallest ratio that meets the target
        mid = (lo + hi) / 2
        m = at(mid)
        if count_macs(m, x).total <= keep * base:
            hi, best = mid, m
        else:
            lo = mid
    recalibrate_bn(best, calibration(entry), None)
    return best, hi


def run_cell(name: str, keep: float, method: str, seeds: list[int], cfg, done: set, out: Path, log) -> None:
    entry, model = zoo.ZOO[name], zoo.trained(name, log)
    x = zoo.example_input(entry)
    base_macs, base_acc = count_macs(model, x).total, zoo.accuracy(model, entry)
    cached = None  # deterministic methods cut the same model for every seed
    for seed in seeds:
        key = (name, keep, method, seed)
        if key in done:
            continue
        start = time.perf_counter()
        if cached is None or method == "random":
            try:
                if method == "tp":
                    pruned, ratio = prune_tp(model, entry, keep)
                elif method == "tp-at-l2":  # Torch-Pruning bisected to at most the MACs our l2 cut kept
                    ours, _ = prune_ours("l2", model, entry, keep, seed)
                    pruned, ratio = prune_tp(model, entry, count_macs(ours, x).total / base_macs)
                elif "-at-tp" in method:
                    pruned, ratio = prune_at_widths(method, model, entry, keep, seed)
                elif method == "tp-heads":  # our l2 cut's head count, Torch-Pruning's choice of heads and units
                    ours, _ = prune_ours("l2", model, entry, keep, seed)
                    kept = [m.num_heads for m in ours.modules() if isinstance(m, zoo.Attention)]
                    pruned, ratio = prune_tp(model, entry, keep, heads_kept=kept[0] if kept else None)
                else:
                    pruned, ratio = prune_ours(method, model, entry, keep, seed)
            except Exception as e:  # a baseline that cannot prune this model: say so, keep going
                log(f"{name} keep {keep} {method}: FAILED {type(e).__name__}: {e}")
                return
            cached = (pruned, ratio, zoo.accuracy(pruned, entry))
        pruned, ratio, oneshot = copy.deepcopy(cached[0]), cached[1], cached[2]
        cut_s = time.perf_counter() - start
        ft = finetune(pruned, Finetune(zoo.loaders(entry, seed)[0], epochs=cfg.epochs, lr=cfg.lr, seed=seed))
        row = {"model": name, "keep": keep, "method": method, "seed": seed, "base_accuracy": base_acc,
               "oneshot": oneshot, "accuracy": zoo.accuracy(pruned, entry),
               "macs": count_macs(pruned, x).total / base_macs, "ratio": ratio,
               "cut_seconds": cut_s, "finetune_seconds": ft.seconds}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"{name} keep {keep} {method:<10} seed {seed}: one-shot {oneshot:.2f} -> {row['accuracy']:.2f} "
            f"(base {base_acc:.2f}, MACs {row['macs']:.3f}, {cut_s:.0f}+{ft.seconds:.0f} s)")


def paired(rows: list[dict], ref_rows: list[dict], field: str) -> str:
    ref = {r["seed"]: r[field] for r in ref_rows}
    d = [r[field] - ref[r["seed"]] for r in rows if r["seed"] in ref]
    if not d or rows is ref_rows:
        return "-"
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
    return f"{statistics.mean(d):+.2f} ± {se:.2f}"


def table(rows: list[dict]) -> str:
    lines = ["| model | MACs | method | one-shot % | after FT % | FT vs random | FT vs TP | one-shot vs TP "
             "| MACs kept |", "|---|---|---|---|---|---|---|---|---|"]
    cells = sorted({(r["model"], r["keep"]) for r in rows}, key=lambda c: (list(zoo.ZOO).index(c[0]), -c[1]))
    for name, keep in cells:
        here = [r for r in rows if r["model"] == name and r["keep"] == keep]
        by = {m: [r for r in here if r["method"] == m] for m in dict.fromkeys(r["method"] for r in here)}
        rnd, tp = by.get("random", []), by.get("tp", [])
        for m in sorted(by, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER)):
            got = by[m]
            mean = lambda f: statistics.mean(r[f] for r in got)  # noqa: E731
            lines.append(f"| {name} (base {got[0]['base_accuracy']:.2f}) | {1 / keep:.0f}x fewer | {m} | "
                         f"{mean('oneshot'):.2f} | {mean('accuracy'):.2f} | {paired(got, rnd, 'accuracy')} | "
                         f"{paired(got, tp, 'accuracy')} | {paired(got, tp, 'oneshot')} | {mean('macs'):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(zoo.ZOO), choices=list(zoo.ZOO))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.25], help="MACs kept (0.25: 4x fewer)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    help=f"our criteria by registry name ({', '.join(sorted(CRITERIA))}), {', '.join(VARIANTS)}, tp, "
                         "tp-heads (a ViT: Torch-Pruning removing whole heads down to our cut's count); a name "
                         "ending in -hd (l2-hd) cuts attention heads within (head_dims=True)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/criteria"))
    ap.add_argument("--merge", nargs="+", type=Path, default=[],
                    help="add the runs of these output directories to --out's (run in parallel, say) before running")
    cfg = ap.parse_args()
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    runs = cfg.out / "runs.jsonl"
    rows = [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []
    done = {(r["model"], r["keep"], r["method"], r["seed"]) for r in rows}
    for other in cfg.merge:
        for line in (other / "runs.jsonl").read_text().splitlines():
            r = json.loads(line)
            if (r["model"], r["keep"], r["method"], r["seed"]) not in done:
                done.add((r["model"], r["keep"], r["method"], r["seed"]))
                with runs.open("a") as f:
                    f.write(line + "\n")

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    for name in cfg.models:
        for keep in cfg.targets:
            for method in cfg.methods:
                run_cell(name, keep, method, cfg.seeds, cfg, done, runs, log)
    rows = [json.loads(line) for line in runs.read_text().splitlines()]
    rows = [r for r in rows if r["model"] in cfg.models and r["keep"] in cfg.targets and r["seed"] in cfg.seeds
            and r["method"] in cfg.methods]
    md = (f"{len(cfg.seeds)} seeds, {cfg.epochs} epochs of fine-tuning at lr {cfg.lr}; "
          f"paired: mean ± s.e. over seeds\n\n" + table(rows) + "\n")
    (cfg.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
