"""The timed layers of a model: each Conv2d and Linear, its shape, and the groups that set its channels.

A pruned model's latency is predicted layer by layer: a convolution's time depends on its input
and output channel counts, and those are set by the groups (``edgeprune.graph``) whose slots hold
its weight's dim 1 (``"in"``) and dim 0 (``"out"``). Everything else (adds, pooling, layout
reorders, activations that are not fused) is the "rest", a measured constant of the calibration.

Example:
    >>> import torch, torchvision
    >>> from edgeprune.graph import analyze
    >>> m = torchvision.models.resnet18()
    >>> x = torch.randn(1, 3, 64, 64)
    >>> ls = timed_layers(m, x, analyze(m, x).groups)
    >>> ls[0].name, ls[0].c_in, ls[0].c_out, ls[0].in_group is None
    ('conv1', 3, 64, True)
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from edgeprune.graph.groups import Group
from edgeprune.specs import ExampleInputs, eval_mode, split_inputs


@dataclass(frozen=True)
class LayerSpec:
    """One timed layer of a model.

    Attributes:
        name: module path (``layer1.0.conv1``).
        kind: ``"conv"`` or ``"gemm"``.
        c_in: input channels of the unpruned layer (a depthwise conv: its channels).
        c_out: output channels of the unpruned layer.
        kernel, stride, pads, dilation: convolution geometry (pads in ONNX order top, left, bottom, right).
        hw: input height and width (a gemm: ``(rows, 1)``, rows = the tokens of a Linear on a
            sequence at batch 1, 1 for a classifier).
        depthwise: a grouped conv with one input channel per group and as many groups as channels.
        in_group: the group that sets ``c_in`` (``None``: fixed).
        out_group: the group that sets ``c_out`` (``None``: fixed); for a depthwise conv both are the same.
    """

    name: str
    kind: str
    c_in: int
    c_out: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    hw: tuple[int, int] = (1, 1)
    depthwise: bool = False
    in_group: str | None = None
    out_group: str | None = None

    @property
    def signature(self) -> str:
        """What the latency of this layer depends on besides its channel counts (the table key)."""
        if self.kind == "gemm":
            return "gemm" if self.hw[0] == 1 else f"gemm m{self.hw[0]}"
        kind = "dwconv" if self.depthwise else "conv"
        return (f"{kind} k{self.kernel[0]}x{self.kernel[1]} s{self.stride[0]}x{self.stride[1]} "
                f"p{'-'.join(map(str, self.pads))} d{self.dilation[0]}x{self.dilation[1]} "
                f"hw{self.hw[0]}x{self.hw[1]}")

    @property
    def family(self) -> str:
        """The staircase family: kernels of one kind share their fast channel steps."""
        if self.kind == "gemm":
            return "gemm"
        return f"{'dwconv' if self.depthwise else 'conv'} k{self.kernel[0]}x{self.kernel[1]}"

    def macs(self, c_in: int, c_out: int) -> int:
        """Multiply-accumulates of this layer at ``c_in`` input and ``c_out`` output channels
        (a depthwise conv: ``c_out`` channels, one input each)."""
        if self.kind == "gemm":
            return self.hw[0] * c_in * c_out
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        oh = (self.hw[0] + self.pads[0] + self.pads[2] - dh * (kh - 1) - 1) // sh + 1
        ow = (self.hw[1] + self.pads[1] + self.pads[3] - dw * (kw - 1) - 1) // sw + 1
        return oh * ow * c_out * (1 if self.depthwise else c_in) * kh * kw

    def op_dict(self) -> dict[str, Any]:
        """The geometry as ``lut_builder`` reads it."""
        return {"kind": self.kind, "kernel": list(self.kernel), "stride": list(self.stride), "pads": list(self.pads),
                "dilation": list(self.dilation), "hw": list(self.hw), "depthwise": self.depthwise, "act": None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timed_layers(model: nn.Module, example_inputs: ExampleInputs, groups: list[Group]) -> list[LayerSpec]:
    """Every Conv2d (2-D, zero padding) and Linear of ``model`` (on a sequence: its tokens are the rows), in execution order.

    Args:
        model: the unpruned model (run once in eval mode, unchanged).
        example_inputs: its example input (batch 1 for latency tables).
        groups: the model's prunable groups (``edgeprune.analyze(model, x).groups``).

    Returns:
        One :class:`LayerSpec` per timed layer. Layers of other kinds (transposed or 1-D convs) are
        not timed: their time goes to the calibrated constant, as does attention itself (its matmuls
        and softmax). A Linear on a sequence is timed as a gemm over its tokens. An axis
        whose channels are not one group's units one for one (a Linear after a flatten, a conv
        reading a concatenation) is timed at its full count: the prediction then overstates its time.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def hook(mod, inputs, _out, name=name):
                if name not in shapes:
                    order.append(name)
                    shapes[name] = tuple(inputs[0].shape)
            hooks.append(module.register_forward_hook(hook))
    args, kwargs = split_inputs(example_inputs)
    try:
        with eval_mode(model), torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()

    extents = {name: tuple(p.shape) for name, p in model.named_parameters()}
    owner: dict[tuple[str, int], str] = {}
    for g in groups:
        for s in g.slots:
            # a table axis is a count of channels: it follows a group only where one unit is one
            # channel of the whole dim (not a flattened feature map, a concatenation or a head)
            if (s.offset, s.inner, s.outer, s.row_groups) != (0, 1, 1, 1) or \
                    extents.get(s.tensor, ())[s.dim:s.dim + 1] != (g.size,):
                continue
            if s.role in ("out", "channel") and s.dim == 0:  # "channel": a depthwise conv's weight
                owner[(s.tensor, 0)] = g.name
            elif s.role == "in" and s.dim == 1:
                owner[(s.tensor, 1)] = g.name
    modules = dict(model.named_modules())
    out = []
    for name in order:
        layer = _spec(name, modules[name], shapes[name], owner)
        if layer is not None:
            out.append(layer)
    return out


def _spec(name: str, m: nn.Module, shape: tuple[int, ...], owner: dict[tuple[str, int], str]) -> LayerSpec | None:
    weight = f"{name}.weight"
    out_group = owner.get((weight, 0))
    if isinstance(m, nn.Linear):
        rows = math.prod(shape[:-1])  # batch 1: every leading dim is tokens (rows of one matrix product)
        return LayerSpec(name, "gemm", m.in_features, m.out_features, hw=(rows, 1), in_group=owner.get((weight, 1)),
                         out_group=out_group)
    if len(shape) != 4 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return None
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    if m.groups > 1 and not depthwise:
        return None  # grouped (not depthwise) convs are not tabled
    ph, pw = m.padding
    in_group = out_group if depthwise else owner.get((weight, 1))
    return LayerSpec(name, "conv", m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                     (ph, pw, ph, pw), tuple(m.dilation), (int(shape[2]), int(shape[3])), depthwise,
                     in_group, out_group)


def model_key(model: nn.Module, example_inputs: ExampleInputs) -> str:
    """A name for (architecture, input shape) under which calibration points are stored.

    Built from the class name, the input shapes and a short hash of the unpruned parameter shapes,
    so two models share a key only when their layers are alike.
    """
    args, kwargs = split_inputs(example_inputs)
    shapes = "x".join(str(d) for t in list(args) + list(kwargs.values()) for d in t.shape)
    digest = hashlib.sha1(repr([(n, tuple(p.shape)) for n, p in model.state_dict().items()]).encode()).hexdigest()
    return f"{type(model).__name__}@{shapes}#{digest[:8]}"
