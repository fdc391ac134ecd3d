"""Attention-head pruning on timm ViTs: what cutting whole heads buys on ONNX Runtime.

For each model (random weights, 224x224, batch 1), side by side in one run:

* dense: the unpruned model;
* Torch-Pruning 1.6 with its ViT recipe at ``--ratio``: ``num_heads={qkv: heads}``,
  ``prune_num_heads=True``, ``prune_head_dims=False``, ``head_pruning_ratio=r``, then
  ``num_heads``/``head_dim``/``attn_dim`` set by hand on every attention module, as its README's
  ViT example does. Its MAC ratio is the budget of the two rows below (equal MACs);
* ours, heads whole: ``edgeprune.prune(model, x, budget=Budget(macs=<TP's ratio>),
  ignore=["*.attn.qkv"])``, what edgeprune did before heads were units (MLP hidden units and the
  residual width only);
* ours: the same without ``ignore``: heads too, found without model-specific code;
* ours, round-to 16: the same with channel counts kept at multiples of 16 (heads are fewer than 16:
  they are not rounded).

Every pruned model is exported with ``edgeprune.export_onnx`` (checked against PyTorch) and timed
on ONNX Runtime (CPU, ``--threads``, median of ``--runs``). Ratios are against the dense model of
the same run.

    python benchmarks/heads.py [--models deit_tiny_patch16_224,deit_small_patch16_224] [--ratio 0.34]

The MACs count the attention matmuls too (``edgeprune.measure.count_macs``).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from pathlib import Path

import timm
import torch
import torch_pruning as tp

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.measure.latency import ort_latency
from edgeprune.measure.macs import count_macs


def prune_ours(model: torch.nn.Module, x: torch.Tensor, macs: float, heads: bool, round_to: int = 1) -> torch.nn.Module:
    return ep.prune(model, x, budget=Budget(macs=macs), criterion="l2", round_to=round_to,
                    ignore=() if heads else ["*.attn.qkv"]).model


def prune_torch_pruning(model: torch.nn.Module, x: torch.Tensor, ratio: float) -> torch.nn.Module:
    model = copy.deepcopy(model)
    attention = [m for m in model.modules() if isinstance(m, timm.models.vision_transformer.Attention)]
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=[model.head],
                                       num_heads={m.qkv: m.num_heads for m in attention},
                                       prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio)
    pruner.step()
    for m in attention:  # its README's ViT example: the user keeps the attributes in step
        m.num_heads = pruner.num_heads[m.qkv]
        m.head_dim = m.qkv.out_features // (3 * m.num_heads)
        m.attn_dim = m.num_heads * m.head_dim
    return model


def measure(model: torch.nn.Module, x: torch.Tensor, workdir: Path, label: str, threads: int, runs: int) -> dict:
    path = ep.export_onnx(model, x, workdir / f"{label}.onnx")
    stats = ort_latency(path, (x,), {}, threads=threads, runs=runs, warmup=max(3, runs // 5))
    heads = [m.num_heads for m in model.modules() if isinstance(m, timm.models.vision_transformer.Attention)]
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model, x).total,
            "ms": stats.median_ms, "heads": heads[0] if heads else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="deit_tiny_patch16_224,deit_small_patch16_224")
    parser.add_argument("--ratio", type=float, default=0.34)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"ratio {args.ratio}, ONNX Runtime {args.threads} threads, median of {args.runs} runs, batch 1, 224x224")
    print(f"{'model':<24} {'method':<19} {'heads':>5} {'params M':>9} {'GMACs':>7} {'ms':>8} "
          f"{'MACs x':>7} {'speed-up':>8} {'speed-up / MAC cut':>18}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
        x = torch.randn(1, 3, 224, 224)
        methods = {"dense": lambda: model,
                   "Torch-Pruning": lambda: prune_torch_pruning(model, x, args.ratio),
                   "ours, heads whole": lambda: prune_ours(model, x, budget, heads=False),
                   "ours": lambda: prune_ours(model, x, budget, heads=True),
                   "ours, round-to 16": lambda: prune_ours(model, x, budget, heads=True, round_to=16)}
        with tempfile.TemporaryDirectory() as tmp:
            dense = None
            for label, make in methods.items():
                row = measure(make(), x, Path(tmp), label.replace(" ", "_").replace(",", ""), args.threads, args.runs)
                dense = dense or row
                if label == "Torch-Pruning":
                    budget = row["macs"] / dense["macs"] + 1e-6  # ours at equal MACs
                mac_cut, speedup = dense["macs"] / row["macs"], dense["ms"] / row["ms"]
                print(f"{name:<24} {label:<19} {row['heads']:>5} {row['params'] / 1e6:>9.2f} {row['macs'] / 1e9:>7.3f} "
                      f"{row['ms']:>8.2f} {1 / mac_cut:>7.2f} {speedup:>7.2f}x {speedup / mac_cut:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
