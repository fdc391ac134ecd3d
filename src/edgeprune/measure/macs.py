"""Multiply-accumulate counts of one forward pass, by kind of work.

Counted at the ATen level while the model runs (a ``TorchDispatchMode``), so every call path is
seen, whatever Python code produced it:

========================  =====================================================================
kind                      ops and MACs
========================  =====================================================================
``conv``                  ``convolution``: out elements x (C_in / groups) x kernel size
                          (transposed: input elements x C_out / groups x kernel size)
``linear``                ``mm``/``addmm`` (and ``bmm`` of a 3-D linear) inside an ``nn.Linear``:
                          M x K x N, bias adds not counted
``matmul``                ``mm``/``addmm``/``bmm``/``baddbmm``/``mv``/``dot`` elsewhere (``matmul``,
                          ``einsum``, ``@``)
``attention``             ``scaled_dot_product_attention`` (B x H x L x S x (E + Ev), fused
                          kernel or math path), the fused ``nn.MultiheadAttention`` /
                          ``nn.TransformerEncoderLayer`` fast paths (projections + attention +
                          FFN), and any other matmul inside an ``nn.MultiheadAttention`` or a
                          module whose class name contains "Attention" (e.g. Swin's windows)
========================  =====================================================================

``torch.utils.flop_counter.FlopCounterMode`` (flops / 2) agrees on convolutions and matmuls, but on
CPU it does not see ``_scaled_dot_product_flash_attention_for_cpu`` nor the fused
multi-head-attention fast path that ``nn.MultiheadAttention`` takes under ``torch.no_grad`` - it
under-counts a ViT by the attention and all its projections. We count those.
Elementwise work (activations, norms, adds, pooling) is not counted: it is small and memory-bound.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from edgeprune.specs import ExampleInputs, split_inputs

aten = torch.ops.aten
KINDS = ("conv", "linear", "matmul", "attention")


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass.

    Attributes:
        total: all counted multiply-accumulates.
        by_kind: MACs per kind (``conv``, ``linear``, ``matmul``, ``attention``).
    """

    total: int
    by_kind: dict[str, int] = field(default_factory=dict)


def count_macs(model: nn.Module, example_inputs: ExampleInputs) -> MacCount:
    """Count the MACs of ``model(example_inputs)`` under ``torch.no_grad``.

    Args:
        model: the model (run once, as it is; put it in eval mode first for inference numbers).
        example_inputs: a tensor, tuple or dict of tensors.

    Returns:
        A :class:`MacCount`; ``total`` scales with the batch size of the input.

    Example:
        >>> count_macs(nn.Linear(4, 3), torch.randn(2, 4)).total
        24
    """
    args, kwargs = split_inputs(example_inputs)
    counter = _MacCounter()
    handles = [nn.modules.module.register_module_forward_pre_hook(counter.enter),
               nn.modules.module.register_module_forward_hook(counter.leave)]
    try:
        with torch.no_grad(), _AttentionScope(counter), counter:
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    by_kind = {k: int(counter.by_kind.get(k, 0)) for k in KINDS}
    return MacCount(total=sum(by_kind.values()), by_kind=by_kind)


def _prod(xs) -> int:
    return math.prod(int(x) for x in xs)


def _mm(args, out) -> int:  # (M, K) @ (K, N)
    a, b = args[-2], args[-1]
    return _prod(a.shape) * int(b.shape[-1])


def _addmm(args, out) -> int:
    return _mm(args[1:3], out)


def _bmm(args, out) -> int:  # (B, M, K) @ (B, K, N)
    a, b = args[0], args[1]
    return _prod(a.shape) * int(b.shape[-1])


def _baddbmm(args, out) -> int:
    return _bmm(args[1:3], out)


def _mv(args, out) -> int:
    return _prod(args[0].shape)


def _addmv(args, out) -> int:
    return _prod(args[1].shape)


def _dot(args, out) -> int:
    return int(args[0].numel())


def _conv(args, out) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    # w: (C_out, C_in/g, *k) or, transposed, (C_in, C_out/g, *k); either way w.numel() = C_out*C_in/g*k
    spatial = x.shape[2:] if transposed else out.shape[2:]
    return int(x.shape[0]) * _prod(spatial) * int(w.numel())


def _sdpa(args, out) -> int:  # q (..., L, E), k (..., S, E), v (..., S, Ev)
    q, k, v = args[0], args[1], args[2]
    batch_heads = _prod(q.shape[:-2])
    return batch_heads * int(q.shape[-2]) * int(k.shape[-2]) * (int(q.shape[-1]) + int(v.shape[-1]))


def _mha_macs(q_shape, k_shape, embed: int) -> int:
    # batch_first (B, L, E); projections: q on L rows, k and v on S rows; attention 2 x L x S x E; out proj
    b, l_len, s_len = int(q_shape[0]), int(q_shape[1]), int(k_shape[1])
    proj_in = b * (l_len + 2 * s_len) * embed * embed
    return proj_in + 2 * b * l_len * s_len * embed + b * l_len * embed * embed


def _native_mha(args, out) -> int:
    # _native_multi_head_attention(query, key, value, embed_dim, num_head, qkv_weight, ...)
    query, key = args[0], args[1]
    return _mha_macs(query.shape, key.shape, int(args[3]))


def _encoder_layer(args, out) -> int:
    # _transformer_encoder_layer_fwd(src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu,
    #   norm_first, eps, norm_w1, norm_b1, norm_w2, norm_b2, ffn_w1, ffn_b1, ffn_w2, ffn_b2, ...)
    src, embed, ffn_w1 = args[0], int(args[1]), args[14]
    b, length = int(src.shape[0]), int(src.shape[1])
    hidden = int(ffn_w1.shape[0])
    return _mha_macs(src.shape, src.shape, embed) + 2 * b * length * embed * hidden


# op -> (MAC rule, default kind); "mm" means linear inside nn.Linear, matmul elsewhere
_RULES: dict[object, tuple[Callable, str]] = {
    aten.convolution: (_conv, "conv"),
    aten.mm: (_mm, "mm"),
    aten.addmm: (_addmm, "mm"),
    aten.bmm: (_bmm, "mm"),
    aten.baddbmm: (_baddbmm, "mm"),
    aten.mv: (_mv, "mm"),
    aten.addmv: (_addmv, "mm"),
    aten.dot: (_dot, "mm"),
    aten._scaled_dot_product_flash_attention_for_cpu: (_sdpa, "attention"),
    aten._scaled_dot_product_flash_attention: (_sdpa, "attention"),
    aten._scaled_dot_product_efficient_attention: (_sdpa, "attention"),
    aten._scaled_dot_product_cudnn_attention: (_sdpa, "attention"),
    aten._native_multi_head_attention: (_native_mha, "attention"),
    aten._transformer_encoder_layer_fwd: (_encoder_layer, "attention"),
}


class _MacCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.by_kind: Counter[str] = Counter()
        self._stack: list[nn.Module] = []  # modules whose forward is running, innermost last
        self.in_attention = 0  # > 0 inside F.scaled_dot_product_attention (its math path is matmuls)

    def enter(self, module: nn.Module, inputs) -> None:
        self._stack.append(module)

    def leave(self, module: nn.Module, inputs, output) -> None:
        if self._stack and self._stack[-1] is module:
            self._stack.pop()

    def _matmul_kind(self) -> str:
        if self.in_attention:
            return "attention"
        for module in reversed(self._stack):
            if isinstance(module, nn.Linear):
                return "linear"
            if isinstance(module, (nn.MultiheadAttention, nn.TransformerEncoderLayer)) \
                    or "Attention" in type(module).__name__:
                return "attention"
        return "matmul"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = _RULES.get(func.overloadpacket)
        if rule is not None:
            macs_of, kind = rule
            self.by_kind[self._matmul_kind() if kind == "mm" else kind] += macs_of(args, out)
        return out


class _AttentionScope(TorchFunctionMode):
    """Marks the matmuls of ``F.scaled_dot_product_attention``'s math path as attention."""

    def __init__(self, counter: _MacCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is not torch.nn.functional.scaled_dot_product_attention:
            return func(*args, **(kwargs or {}))
        self.counter.in_attention += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.counter.in_attention -= 1
