"""Predicted peak SRAM (the TFLite Micro arena) of a model, from its traced graph, in milliseconds.

Planning a prune against ``ram=64KB`` needs the arena of many candidate models; converting each to
``.tflite`` and loading it in TFLM takes seconds. This module predicts it from one trace
(:func:`edgeprune.graph.trace.trace`): the graph's tensors with their lifetimes, lowered the way
LiteRT's converter lowers them, placed by the planner TFLM uses. The measured figure
(:func:`edgeprune.runtimes.tflm.measure_arena`) stays the verdict; this is the planner's guide.

1. **Lowering** (what ``litert-torch`` 0.10 writes, read off its files): every tensor an op
   produces is a buffer, except what the converter folds away (BatchNorm after a convolution in
   INT8 and in 2-d graphs, ReLU/ReLU6 after a conv, linear, add or BatchNorm, dropout). Convolutions
   and pools compute channels-last; elementwise ops, means of 1-d maps and flatten compute in
   PyTorch's channels-first order, so a tensor crossing between the two is copied by a
   ``TRANSPOSE`` (and, for 1-d maps, a ``RESHAPE`` to and from 4-d): each copy is a buffer of the
   tensor's size. A strided convolution with padding gets an explicit ``PAD`` (a padded copy). In
   FP32, BatchNorm after a 1-d convolution stays as ``MUL`` + ``ADD`` in channels-first order.
   In INT8, a max-pool shares its input's scale (:mod:`edgeprune.quantize.litert` annotates the
   1-d pools the package leaves bare; left bare, each gets a requantizing ``QUANTIZE`` copy).
2. **Lifetimes** (as TFLM's allocation-info builder marks them): the model's inputs live from
   time 0, op ``i``'s outputs from ``i + 1`` to the last op that reads them, the model's outputs
   to the end. Sizes are rounded up to 16 bytes.
3. **Planning**: TFLM's greedy planner, written here from its documented behaviour: buffers by
   size, largest first (equal sizes: the later one first), each at the lowest offset where it
   overlaps no buffer alive at the same time. The head is the highest end.
4. **Tail** (what persists: tensor and node records, per-channel quantization arrays), estimated
   per tensor and op from the allocator's reports on the models in the tests.

The peak is a maximum over time, so what sets it is the set of buffers alive at the worst op:
:attr:`SramReport.peak_layers` names the layers whose tensors those are, which is where a prune
must cut first (cutting elsewhere leaves the peak where it is).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from edgeprune.specs import ExampleInputs, flat_inputs

ALIGN = 16
_FUSED_ACT = {"relu", "relu6", "hardtanh", "relu_"}
_FUSES_ACT = {"conv", "linear", "add", "batch_norm", "mul"}
_IDENTITY = {"dropout", "identity", "contiguous", "clone", "feature_dropout", "alpha_dropout", "detach"}
_ELEMENTWISE = {"add", "sub", "mul", "div", "cat", "sigmoid", "tanh", "silu", "gelu", "softmax", "log_softmax",
                "hardswish", "hardsigmoid", "leaky_relu", "elu", "relu", "relu6", "hardtanh", "neg", "abs", "pow"}


@dataclass(frozen=True)
class Buffer:
    """One planned buffer: ``nbytes`` (aligned) alive from op ``first`` to op ``last`` (inclusive).

    Attributes:
        op: the lowered op that writes it (``CONV_2D``, ``TRANSPOSE``, ``INPUT`` ...).
        layer: the PyTorch module (or op) it belongs to, for attributing the peak.
    """

    op: str
    layer: str
    nbytes: int
    first: int
    last: int


@dataclass
class SramReport:
    """A predicted TFLM arena, in bytes.

    Attributes:
        total: head + tail: the predicted ``arena_size``.
        head: the planned buffers' extent (activations and copies).
        tail: the estimated persistent part.
        peak_time: the op at which the most bytes are alive.
        peak_layers: the layers whose buffers are alive then (largest first): where to cut.
        live: bytes alive after each lowered op, in order (for plots).
        buffers: the lowered buffers with their offsets.
        ops: the lowered op count.
        flash: the predicted ``.tflite`` bytes: weights at the precision plus each tensor's record
            in the flatbuffer (~190 bytes FP32, ~230 INT8 with its quantization parameters, fitted
            on the files of the tests within ~10%).
    """

    total: int
    head: int
    tail: int
    peak_time: int
    peak_layers: list[str]
    live: list[int]
    buffers: list[tuple[Buffer, int]] = field(default_factory=list)
    ops: int = 0
    flash: int = 0

    def to_dict(self) -> dict:
        return {"total": self.total, "head": self.head, "tail": self.tail, "peak_time": self.peak_time,
                "peak_layers": list(self.peak_layers), "ops": self.ops, "flash": self.flash}


def plan_offsets(buffers: list[Buffer]) -> list[int]:
    """Place ``buffers`` like TFLM's greedy planner (see the module docstring); offsets in input order.

    Example:
        >>> bs = [Buffer("A", "a", 64, 0, 1), Buffer("B", "b", 64, 1, 2), Buffer("C", "c", 64, 2, 3)]
        >>> plan_offsets(bs)  # A and C never overlap in time: they share offset 0
        [0, 64, 0]
    """
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].nbytes, -i))
    placed: list[tuple[int, int]] = []  # (offset, index), kept sorted by offset
    offsets = [0] * len(buffers)
    for i in order:
        b = buffers[i]
        candidate = 0
        for offset, j in placed:  # first gap among the buffers alive at the same time
            other = buffers[j]
            if other.first > b.last or b.first > other.last:
                continue
            if offset - candidate >= b.nbytes:
                break
            candidate = max(candidate, offset + other.nbytes)
        offsets[i] = candidate
        placed.append((candidate, i))
        placed.sort()
    return offsets


def predict_arena(model: nn.Module, example_inputs: ExampleInputs, dtype: str = "float32") -> SramReport:
    """Predict the TFLM arena of ``model`` exported by LiteRT's converter (FP32 or INT8).

    Args:
        model: the model (traced once in eval mode; not changed).
        example_inputs: its example input (batch 1: what a device runs).
        dtype: ``"float32"`` or ``"int8"`` (the activations' type).

    Returns:
        A :class:`SramReport`.

    Example:
        >>> m = nn.Sequential(nn.Conv1d(3, 16, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 4))
        >>> predict_arena(m, torch.randn(1, 3, 64)).head
        8192
    """
    from edgeprune.graph import default_rules
    from edgeprune.graph.trace import trace

    if dtype not in ("float32", "int8"):
        raise ValueError(f"dtype must be 'float32' or 'int8', got {dtype!r}")
    with torch.no_grad():
        result, output = trace(model, example_inputs, default_rules())
    low = _Lowering(model, 4 if dtype == "float32" else 1, dtype == "int8")
    for t in flat_inputs(example_inputs):
        low.add_input(id(t), tuple(t.shape))
    low.nc_wanted = _channels_first_consumers(result.records)
    for rec in result.records:
        low.lower(rec)
    outs = [id(t) for t in (output if isinstance(output, (tuple, list)) else [output]) if isinstance(t, torch.Tensor)]
    return low.report(outs)


class _Lowering:
    """Turns traced ops into TFLM buffers with lifetimes (the rules of the module docstring)."""

    def __init__(self, model: nn.Module, itemsize: int, int8: bool) -> None:
        self.itemsize, self.int8 = itemsize, int8
        self.modules = dict(model.named_modules())
        self.params = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
        self.shape: dict[int, tuple[int, ...]] = {}
        self.forms: dict[int, dict[str, int]] = {}  # tensor -> {"nc" | "nchw4" | "nhwc": buffer}
        self.made_by: dict[int, str] = {}  # tensor -> family of the op that made it ("conv", "add", ...)
        self.ops: list[tuple[str, str, list[int], list[int]]] = []  # (op, layer, in buffers, out buffers)
        self.sizes: list[int] = []
        self.owner: list[tuple[str, str]] = []  # buffer -> (op, layer)
        self.consts = 0
        self.persist = 0
        self.weight_bytes = 0
        self.layer_of: dict[int, str] = {}  # tensor -> the layer that produced it (copies count as it)
        self.nc_wanted: set[int] = set()

    # -- buffers and ops -----------------------------------------------------------------------
    def _buffer(self, shape: tuple[int, ...], op: str, layer: str) -> int:
        n = 1
        for s in shape:
            n *= int(s)
        self.sizes.append(-(-n * self.itemsize // ALIGN) * ALIGN)
        self.owner.append((op, layer))
        return len(self.sizes) - 1

    def _op(self, op: str, layer: str, ins: list[int], shape: tuple[int, ...], consts: int = 0) -> int:
        out = self._buffer(shape, op, layer)
        self.ops.append((op, layer, ins, [out]))
        self.consts += consts
        return out

    def add_input(self, key: int, shape: tuple[int, ...]) -> None:
        self.shape[key] = shape
        self.forms[key] = {"nc": self._buffer(shape, "INPUT", "input")}
        self.made_by[key] = "input"

    # -- layouts -------------------------------------------------------------------------------
    def form(self, key: int, want: str, layer: str) -> int:
        """The buffer of tensor ``key`` in layout ``want``, copying it there (and caching) if needed."""
        forms, shape = self.forms[key], self.shape[key]
        if want in forms:
            return forms[want]
        layer = self.layer_of.get(key, layer)  # a copy of a tensor is charged to the layer that made it
        if len(shape) not in (3, 4) or (want == "nchw4" and len(shape) == 4):
            want = "nc"
            if want in forms:
                return forms[want]
        one_d, channels = len(shape) == 3, shape[1] if len(shape) > 1 else 1
        if want == "nhwc":
            if "nchw4" in forms:
                buf = self._op("TRANSPOSE", layer, [forms["nchw4"]], shape, 1)
            elif channels == 1:  # one channel: the layouts agree, a reshape suffices
                buf = self._op("RESHAPE", layer, [forms["nc"]], shape, 1)
            elif one_d:
                forms["nchw4"] = self._op("RESHAPE", layer, [forms["nc"]], shape, 1)
                buf = self._op("TRANSPOSE", layer, [forms["nchw4"]], shape, 1)
            else:
                buf = self._op("TRANSPOSE", layer, [forms["nc"]], shape, 1)
        elif want == "nchw4":  # 1-d only
            src = forms.get("nc")
            buf = self._op("RESHAPE" if src is not None else "TRANSPOSE", layer,
                           [src if src is not None else forms["nhwc"]], shape, 1)
        else:  # "nc"
            if "nchw4" in forms:
                buf = self._op("RESHAPE", layer, [forms["nchw4"]], shape, 1)
            elif one_d:
                forms["nchw4"] = self._op("TRANSPOSE", layer, [forms["nhwc"]], shape, 1)
                buf = self._op("RESHAPE", layer, [forms["nchw4"]], shape, 1)
            else:
                buf = self._op("TRANSPOSE", layer, [forms["nhwc"]], shape, 1)
        forms[want] = buf
        return buf

    def _set(self, key: int, shape: tuple[int, ...], form: str, buf: int, family: str) -> None:
        self.shape[key], self.forms[key], self.made_by[key] = shape, {form: buf}, family
        self.layer_of[key] = self.owner[buf][1]

    def _alias(self, src: int, dst: int, shape: tuple[int, ...] | None = None) -> None:
        self.shape[dst] = shape or self.shape[src]
        self.forms[dst] = self.forms[src] if shape is None or shape == self.shape[src] else \
            {"nc": self.forms[src].get("nc", next(iter(self.forms[src].values())))}
        self.made_by[dst] = self.made_by[src]
        if src in self.layer_of:
            self.layer_of[dst] = self.layer_of[src]

    # -- ops -----------------------------------------------------------------------------------
    def lower(self, rec) -> None:
        ins = [k for k in rec.in_ids if k not in self.params and k in self.forms]
        if not rec.out_ids:
            return
        out, shape, name = rec.out_ids[0], tuple(rec.out_shapes[0]), rec.name.lstrip("_")
        layer = rec.module or name
        module = self.modules.get(rec.module)
        if not ins:  # a constant computed in the forward: it lives in flash
            self.params.add(out)
            return
        src = ins[0]
        if name in _IDENTITY:
            self._alias(src, out)
        elif name.startswith("conv") and name[4:6] in ("1d", "2d"):
            buf = self.form(src, "nhwc", layer)
            stride = getattr(module, "stride", (1,))
            padding = getattr(module, "padding", (0,))
            if isinstance(padding, tuple) and any(s > 1 for s in stride) and any(p > 0 for p in padding):
                padded = list(self.shape[src])
                for d, p in enumerate(padding):
                    padded[2 + d] += 2 * p
                buf = self._op("PAD", layer, [buf], tuple(padded), 1)
            groups = getattr(module, "groups", 1)
            self._weights(module, shape[1])
            self._set(out, shape, "nhwc", self._op("DEPTHWISE_CONV_2D" if groups > 1 else "CONV_2D", layer,
                                                   [buf], shape, 2), "conv")
            self.persist += 96 + 8 * shape[1]
        elif name == "batch_norm":
            if self.made_by.get(src) == "conv" and (self.int8 or len(shape) == 4):
                self._alias(src, out)  # folded into the convolution
                self.made_by[out] = "batch_norm"
            else:
                buf = self.form(src, "nc", layer)
                mul = self._op("MUL", layer, [buf], shape, 1)
                self._set(out, shape, "nc", self._op("ADD", layer, [mul], shape, 1), "batch_norm")
                self.persist += 32
                self.weight_bytes += 2 * 4 * shape[1]
        elif name in _FUSED_ACT and self.made_by.get(src) in _FUSES_ACT:
            self._alias(src, out)  # a fused activation
        elif name.startswith("max_pool") or name.startswith("avg_pool"):
            buf = self.form(src, "nhwc", layer)
            self._set(out, shape, "nhwc", self._op("MAX_POOL_2D" if "max" in name else "AVERAGE_POOL_2D",
                                                   layer, [buf], shape), "pool")
            self.persist += 16
        elif name.startswith("adaptive_avg_pool") or name == "mean":
            reduced = tuple(s for s in shape if s != 1) if len(shape) > 2 else shape
            want = "nchw4" if name == "adaptive_avg_pool1d" else ("nhwc" if len(self.shape[src]) == 4 else "nc")
            buf = self.form(src, want, layer)
            self._set(out, shape, "nc", self._op("MEAN", layer, [buf], reduced or shape, 1), "mean")
            self.persist += 16
        elif name in ("flatten", "view", "reshape", "squeeze", "unsqueeze"):
            if self.made_by.get(src) == "mean" or _numel(self.shape[src][2:]) == 1:  # nothing to reorder
                self._alias(src, out, shape)
            else:
                buf = self.form(src, "nchw4" if len(self.shape[src]) == 3 else "nc", layer)
                self._set(out, shape, "nc", self._op("RESHAPE", layer, [buf], shape, 1), "reshape")
                self.persist += 16
        elif name == "linear":
            self._weights(module, shape[-1])
            self._set(out, shape, "nc", self._op("FULLY_CONNECTED", layer, [self.form(src, "nc", layer)], shape, 2),
                      "linear")
            self.persist += 96
        else:  # elementwise and anything else: one op in PyTorch's layout
            bufs = [self.form(k, "nc", layer) for k in ins]
            family = "add" if name in ("add", "sub") else ("mul" if name == "mul" else name)
            self._set(out, shape, "nc", self._op(name.upper(), layer, bufs, shape), family)
            self.persist += 16
        for k, s in zip(rec.out_ids[1:], rec.out_shapes[1:]):  # extra outputs (rare): buffers of their own
            self._set(k, tuple(s), "nc", self._op("OUTPUT", layer, [], tuple(s)), name)
        forms = self.forms.get(out, {})
        if out in self.nc_wanted and len(self.shape[out]) == 3 and set(forms) == {"nhwc"}:
            # A channels-last map that a channels-first op reads later: the converter moves it to
            # channels-first at once, and channels-last readers get a transpose of that copy.
            self.form(out, "nc", layer)
            del forms["nhwc"]

    def _weights(self, module: nn.Module | None, out_channels: int) -> None:
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        n_w = int(weight.numel()) if isinstance(weight, torch.Tensor) else 0
        n_b = int(bias.numel()) if isinstance(bias, torch.Tensor) else out_channels
        self.weight_bytes += n_w * self.itemsize + 4 * n_b + (12 * out_channels if self.int8 else 0)

    # -- the plan ------------------------------------------------------------------------------
    def report(self, outputs: list[int]) -> SramReport:
        n = len(self.ops)
        first = [0] * len(self.sizes)
        last = [0] * len(self.sizes)
        for t, (_, _, ins, outs) in enumerate(self.ops, start=1):
            for b in outs:
                first[b] = last[b] = t
            for b in ins:
                last[b] = max(last[b], t)
        for k in outputs:
            for b in self.forms.get(k, {}).values():
                last[b] = n
        buffers = [Buffer(*self.owner[i], self.sizes[i], first[i], last[i]) for i in range(len(self.sizes))]
        offsets = plan_offsets(buffers)
        head = max((o + b.nbytes for o, b in zip(offsets, buffers)), default=0)
        live = [sum(b.nbytes for b in buffers if b.first <= t <= b.last) for t in range(n + 1)]
        peak_time = max(range(len(live)), key=live.__getitem__)
        bytes_by_layer: dict[str, int] = defaultdict(int)
        for b in buffers:
            if b.first <= peak_time <= b.last:
                bytes_by_layer[b.layer] += b.nbytes
        peak_layers = sorted(bytes_by_layer, key=lambda k: -bytes_by_layer[k])
        tensors = len(self.sizes) + self.consts
        tail = 31 * tensors + 64 * n + 128 + (64 if self.int8 else 0) + self.persist + 600
        tail = -(-tail // ALIGN) * ALIGN
        flash = self.weight_bytes + (230 if self.int8 else 190) * tensors + 1000
        return SramReport(head + tail, head, tail, peak_time, peak_layers, live, list(zip(buffers, offsets)), n, flash)


def _channels_first_consumers(records) -> set[int]:
    """Tensors (and what they alias through folded ops) that an elementwise op with two tensor inputs reads."""
    alias: dict[int, int] = {}
    for rec in records:  # folded or fused ops pass their input through
        name = rec.name.lstrip("_")
        if rec.out_ids and rec.in_ids and (name in _IDENTITY or name in _FUSED_ACT or name == "batch_norm"):
            alias[rec.out_ids[0]] = rec.in_ids[0]
    wanted: set[int] = set()
    for rec in records:
        name = rec.name.lstrip("_")
        if name in ("add", "sub", "mul", "cat") and len(rec.in_ids) >= 2:
            for k in rec.in_ids:
                while k not in wanted:
                    wanted.add(k)
                    if k not in alias:
                        break
                    k = alias[k]
    return wanted


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n

