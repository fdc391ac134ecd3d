"""Check a pruned model the way a deployment would: it runs, keeps its output shapes, shrank, and
its ONNX export agrees with PyTorch on ONNX Runtime."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from edgeprune.graph.trace import call_model
from edgeprune.specs import eval_mode


@dataclass
class Verification:
    """What ``verify_pruned`` found. ``ok`` is True only when every check passed."""

    forward_ok: bool = False
    shapes_ok: bool = False
    mac_ratio: float | None = None
    onnx_ok: bool | None = None  # None when not checked
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_pruned(original: nn.Module, pruned: nn.Module, example_inputs: Any, *, onnx: bool = True,
                  max_mac_ratio: float | None = None, rtol: float = 1e-3, exporter: str = "auto") -> Verification:
    """Run the checks every surgery must pass and say which failed.

    Args:
        original: the model before pruning.
        pruned: the model after pruning.
        example_inputs: a tensor, tuple or dict of tensors.
        onnx: export ``pruned`` and compare ONNX Runtime with PyTorch: every element within
            ``rtol`` times the largest magnitude of the PyTorch output.
        max_mac_ratio: if given, pruned MACs / original MACs must not exceed it.
        exporter: passed to ``edgeprune.export.onnx.export_onnx``.

    Returns:
        A ``Verification``; ``problems`` names each failed check.
    """
    from edgeprune.export.onnx import ExportError, export_onnx
    from edgeprune.measure import count_macs

    report = Verification()
    with torch.no_grad(), eval_mode(original), eval_mode(pruned):  # every module's flag comes back
        expected = _tensors(call_model(original, example_inputs))
        try:
            got = _tensors(call_model(pruned, example_inputs))
        except Exception as exc:  # the point of the check: a pruned model that cannot run
            report.problems.append(f"forward fails: {type(exc).__name__}: {exc}")
            return report
        report.forward_ok = True
        report.shapes_ok = [t.shape for t in got] == [t.shape for t in expected]
        if not report.shapes_ok:
            report.problems.append(f"output shapes changed: {[tuple(t.shape) for t in expected]} -> "
                                   f"{[tuple(t.shape) for t in got]}")
        report.mac_ratio = count_macs(pruned, example_inputs).total / max(1, count_macs(original, example_inputs).total)
        if max_mac_ratio is not None and report.mac_ratio > max_mac_ratio:
            report.problems.append(f"MACs only down to {report.mac_ratio:.2f}x (needed <= {max_mac_ratio})")
    if onnx and report.forward_ok:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                scale = max(float(t.abs().max()) for t in got) if got else 1.0
                export_onnx(pruned, example_inputs, Path(tmp) / "pruned.onnx", rtol=0.0, atol=rtol * scale,
                            exporter=exporter, check=True)
                report.onnx_ok = True
            except ExportError as exc:
                report.onnx_ok = False
                report.problems.append(f"ONNX: {exc}")
    return report


def _tensors(output: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(output)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def attention_variants(model: nn.Module) -> list[str]:
    """The attention implementations ``model`` can switch between, its current one first.

    A Hugging Face model runs its attention through one of several code paths (``eager``: matmuls
    and softmax; ``sdpa``: one fused op), chosen by ``config._attn_implementation`` and switched
    with ``set_attn_implementation``. Each path reads head counts its own way, so a cut that one
    accepts, another may not. Models without such a switch have one path: ``[]``.
    """
    holder = _switch_holder(model)
    if holder is None:
        return []
    current = holder.config._attn_implementation
    offered = ["eager"] + (["sdpa"] if getattr(holder, "_supports_sdpa", False) else [])
    return [current] + [name for name in offered if name != current]


def _switch_holder(model: nn.Module) -> nn.Module | None:
    """The outermost module with an attention switch (the model itself, or one it wraps)."""
    for module in model.modules():  # pre-order: outermost first
        current = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if isinstance(current, str) and callable(getattr(module, "set_attn_implementation", None)):
            return module
    return None


def check_attention_variants(pruned: nn.Module, example_inputs: Any, rtol: float = 1e-4) -> list[str]:
    """Run ``pruned`` under every attention implementation it offers and compare them.

    Args:
        pruned: the pruned model (its implementation is restored afterwards).
        example_inputs: a tensor, tuple or dict of tensors.
        rtol: every output within ``rtol`` times the largest magnitude of the current path's output.

    Returns:
        The implementations checked, current first (empty when the model has one path).

    Raises:
        UnsupportedModelError: the pruned model fails or disagrees under one of them, named.
    """
    from edgeprune.errors import UnsupportedModelError

    variants = attention_variants(pruned)
    if len(variants) < 2:
        return variants
    holder = _switch_holder(pruned)
    reference: list[torch.Tensor] = []
    try:
        with torch.no_grad(), eval_mode(pruned):
            for name in variants:
                holder.set_attn_implementation(name)
                try:
                    got = _tensors(call_model(pruned, example_inputs))
                except Exception as exc:  # the point of the check
                    raise UnsupportedModelError(f"the pruned {type(pruned).__name__} fails under attention "
                                                f"implementation {name!r}: {type(exc).__name__}: {exc}") from exc
                if not reference:
                    reference = got
                    continue
                scale = max((float(t.abs().max()) for t in reference if t.is_floating_point()), default=1.0)
                worst = max((float((a - b).abs().max()) for a, b in zip(reference, got) if a.is_floating_point()),
                            default=0.0)
                if [t.shape for t in got] != [t.shape for t in reference] or worst > rtol * max(scale, 1e-12):
                    raise UnsupportedModelError(f"the pruned {type(pruned).__name__} computes something else under "
                                                f"attention implementation {name!r} than under {variants[0]!r} "
                                                f"(max difference {worst:.3g})")
    finally:
        holder.set_attn_implementation(variants[0])
    return variants
