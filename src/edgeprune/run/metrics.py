"""The figures a run records: the before/after summary and the per-layer table.

``metrics.json`` holds, among others, ``before`` and ``after`` objects with the same keys::

    accuracy     evaluation score in percent (top-1 by default); null without data
    macs         multiply-accumulates of one forward pass at the example input
    params       parameter values (nonzero ones for a sparse model: ``params_total`` has all)
    bytes        bytes of the weights (the state dict at its dtypes)
    onnx_bytes   bytes of the deployable ONNX file (the sparse file for sparse kinds)
    latency_ms   median ONNX Runtime latency at ``threads`` intra-op threads
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from edgeprune.measure.profile import Profile

METRICS_FORMAT = "edgeprune.run"
METRICS_VERSION = 1
SUMMARY_KEYS = ("accuracy", "macs", "params", "params_total", "bytes", "onnx_bytes", "latency_ms")


def summary(profile: Profile, accuracy: float | None, *, sparse: bool = False) -> dict[str, Any]:
    """The ``before``/``after`` object of ``metrics.json`` from a profile and an accuracy."""
    onnx_bytes = profile.sizes.sparse_onnx_bytes if sparse and profile.sizes.sparse_onnx_bytes else profile.sizes.onnx_bytes
    return {
        "accuracy": accuracy,
        "macs": profile.macs.total,
        "params": profile.params.nonzero if sparse else profile.params.total,
        "params_total": profile.params.total,
        "bytes": profile.sizes.state_dict_bytes,
        "onnx_bytes": onnx_bytes,
        "latency_ms": profile.latency_onnx.median_ms if profile.latency_onnx else None,
    }


def ratios(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """``after / before`` for every numeric figure but accuracy (which gets ``accuracy_drop``)."""
    out: dict[str, float | None] = {}
    for key in SUMMARY_KEYS:
        if key == "accuracy":
            continue
        b, a = before.get(key), after.get(key)
        out[key] = a / b if b and a is not None else None
    lat_b, lat_a = before.get("latency_ms"), after.get("latency_ms")
    out["speedup"] = lat_b / lat_a if lat_b and lat_a else None
    acc_b, acc_a = before.get("accuracy"), after.get("accuracy")
    out["accuracy_drop"] = acc_b - acc_a if acc_b is not None and acc_a is not None else None
    return out


def layer_table(original: nn.Module, pruned: nn.Module) -> list[dict[str, Any]]:
    """One row per layer with a weight: output units and nonzero weights, before and after.

    Args:
        original: the unpruned model.
        pruned: the pruned (smaller or masked) model, with the same module names.

    Returns:
        Rows ``{"layer", "type", "units_before", "units_after", "kept_units", "weights_before",
        "weights_after", "kept_weights"}`` in registration order; ``kept_*`` are fractions.
    """
    import torch

    after = dict(pruned.named_modules())
    rows = []
    for name, module in original.named_modules():
        weight = getattr(module, "weight", None)
        other = after.get(name)
        if not name or not isinstance(weight, torch.Tensor) or weight.dim() < 2 or other is None:
            continue
        new = getattr(other, "weight", None)
        if not isinstance(new, torch.Tensor):
            continue
        units_b, units_a = int(weight.shape[0]), int(new.shape[0])
        nz_b, nz_a = int(torch.count_nonzero(weight)), int(torch.count_nonzero(new.detach()))
        rows.append({"layer": name, "type": type(module).__name__, "units_before": units_b, "units_after": units_a,
                     "kept_units": units_a / units_b if units_b else 1.0, "weights_before": nz_b,
                     "weights_after": nz_a, "kept_weights": nz_a / nz_b if nz_b else 1.0})
    return rows


def json_summary(metrics: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """What ``edgeprune prune --json`` prints: status, exit code, run directory, before/after, checks."""
    return {"status": metrics["status"], "exit_code": metrics["exit_code"], "run_dir": run_dir,
            "before": metrics["before"], "after": metrics["after"], "ratios": metrics["ratios"],
            "targets": metrics["targets"], "guard": metrics["guard"], "int8": metrics.get("int8"),
            **({"metric": metrics["metric"], "task_figures": metrics["task_figures"]}
               if metrics.get("task_figures") else {})}
