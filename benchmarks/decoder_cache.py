"""A grouped-query-attention decoder, dense and pruned, on ONNX Runtime: no cache, prefill, one decode step.

A ``LlamaForCausalLM`` built from a small config (random weights, seed 0): hidden ``--hidden``,
``--layers`` layers, 8 query heads and 2 key/value heads, FFN 4x hidden, vocabulary 2,048. The
pruned copy is ``edgeprune.prune(model, ids, ratio=--ratio)`` (uniform, L2; SDPA is the default
attention, so query heads are cut within their key/value groups and the cache keeps its shape).
Each model is exported three ways (``edgeprune.export.decoder``) and each pair (dense, pruned)
is timed interleaved in one ORT session per file (batch 1, 2 threads, median of ``--rounds``):

* no cache:  ``use_cache=False`` over a ``--tokens``-token prompt (every token recomputed);
* prefill:   the same prompt, returning the cache;
* decode:    one new token given the cache of ``--tokens`` past tokens (the per-token cost).

Every file is checked against PyTorch before it is timed; the decode step's logits are also
checked against the no-cache forward over the prompt plus that token.

    python benchmarks/decoder_cache.py --hidden 256 --layers 4 --tokens 64
"""
from __future__ import annotations

import argparse
import json

import torch

import edgeprune as ep
from edgeprune.export.decoder import DecodeStep, NoCache, Prefill, decode_inputs
from edgeprune.measure import count_macs
from edgeprune.runtimes import measure_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=2048, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=2,
                         max_position_embeddings=4 * args.tokens)
    torch.manual_seed(0)
    dense = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, 2048, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    nxt = torch.randint(0, 2048, (1, 1), generator=torch.Generator().manual_seed(1))
    result = ep.prune(dense, prompt, ratio=args.ratio)
    pruned = result.model
    attn = pruned.model.layers[0].self_attn
    print(f"pruned at {args.ratio}: query heads {attn.q_proj.out_features // attn.head_dim}/8, key/value heads "
          f"{attn.k_proj.out_features // attn.head_dim}/2, MACs {result.stats['macs_after'] / result.stats['macs_before']:.3f}x"
          f" (checked under {result.stats['attention_checked']})")
    with torch.no_grad():
        for name, model in (("dense", dense), ("pruned", pruned)):
            full = NoCache(model)(torch.cat([prompt, nxt], 1))[:, -1]
            step = DecodeStep(model)(*decode_inputs(model, prompt, nxt))[0][:, -1]
            assert torch.allclose(full, step, atol=1e-4), f"{name}: decode step disagrees with the full forward"
    rows = {}
    for mode, wrap, inputs in (("no cache", NoCache, (prompt,)), ("prefill", Prefill, (prompt,)),
                               ("decode", DecodeStep, decode_inputs(dense, prompt, nxt))):
        macs = [count_macs(wrap(m), inputs).total for m in (dense, pruned)]
        measured = measure_models({"dense": wrap(dense), "pruned": wrap(pruned)}, inputs, threads=args.threads,
                                  rounds=args.rounds)
        d, p = measured["dense"].ms, measured["pruned"].ms
        rows[mode] = {"dense_ms": d, "pruned_ms": p, "speedup": d / p, "mac_ratio": macs[1] / macs[0]}
        print(f"{mode:9s} dense {d:7.3f} ms  pruned {p:7.3f} ms  {d / p:.2f}x  (MACs {macs[1] / macs[0]:.3f}x)",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
