"""Rules for ops that own prunable parameters: convolutions, linear layers, norms, PReLU, embeddings."""
from __future__ import annotations

import torch

from edgeprune.graph.rules._args import arg
from edgeprune.graph.spaces import Seg, fixed
from edgeprune.graph.trace import GroupedInput


def conv(ctx, args, kwargs, out) -> None:
    x, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    b, groups = arg(args, kwargs, 2, "bias"), arg(args, kwargs, 6, "groups", 1)
    xd, wd = ctx.dims(x), ctx.dims(w)
    channel_dim = 1 if x.dim() == w.dim() else 0  # unbatched input has no batch dim
    in_per_group, out_per_group = w.shape[1], w.shape[0] // groups
    for d in range(2, w.dim()):
        ctx.block(wd[d], "kernel size")
    if groups == 1:
        ctx.unify(xd[channel_dim], wd[1], "conv input channels")
        ctx.role(w, 1, "in")
        ctx.role(w, 0, "out")
    elif in_per_group == 1:
        # Depthwise: output channel o = c * out_per_group + r reads input channel c only.
        ctx.unify(wd[0], _expand(ctx, xd[channel_dim], out_per_group), "depthwise conv channels")
        ctx.block(wd[1], "depthwise kernel")
        ctx.role(w, 0, "channel")
    else:
        # Grouped: both sides prunable in equal numbers per group, weight inputs gathered per group.
        ctx.spaces.set_partitions(xd[channel_dim], groups, f"grouped conv input in {ctx.where}")
        ctx.spaces.set_partitions(wd[0], groups, f"grouped conv output in {ctx.where}")
        ctx.block(wd[1], "grouped conv weight (pruned through its input)")
        ctx.grouped.append(GroupedInput(ctx.param_name(w) or "", xd[channel_dim], groups))
        if ctx.param_name(w) is None:
            ctx.block(xd[channel_dim], "grouped conv with a computed weight")
        ctx.role(w, 0, "out")
    _conv_output(ctx, xd, b, wd[0], channel_dim, out)


def conv_transpose(ctx, args, kwargs, out) -> None:
    x, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    b, groups = arg(args, kwargs, 2, "bias"), arg(args, kwargs, 6, "groups", 1)
    xd, wd = ctx.dims(x), ctx.dims(w)
    channel_dim = 1 if x.dim() == w.dim() else 0
    for d in range(2, w.dim()):
        ctx.block(wd[d], "kernel size")
    if groups != 1:
        raise NotImplementedError("grouped transposed convolution")
    ctx.unify(xd[channel_dim], wd[0], "transposed conv input channels")
    ctx.role(w, 0, "in")
    ctx.role(w, 1, "out")
    _conv_output(ctx, xd, b, wd[1], channel_dim, out)


def _conv_output(ctx, xd, bias, channels, channel_dim: int, out) -> None:
    """The bias follows the output channels; the output keeps the batch dim and gets new spatial dims."""
    if bias is not None:
        ctx.unify(ctx.dims(bias)[0], channels, "conv bias")
        ctx.role(bias, 0, "channel")
    dims = [fixed(n) for n in out.shape]
    dims[channel_dim] = channels
    if channel_dim == 1:
        dims[0] = xd[0]
    ctx.set_dims(out, tuple(dims))


def linear(ctx, args, kwargs, out) -> None:
    x, w, b = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight"), arg(args, kwargs, 2, "bias")
    xd, wd = ctx.dims(x), ctx.dims(w)
    ctx.unify(xd[-1], wd[1], "linear input features")
    ctx.role(w, 1, "in")
    ctx.role(w, 0, "out")
    if b is not None:
        ctx.unify(ctx.dims(b)[0], wd[0], "linear bias")
        ctx.role(b, 0, "channel")
    ctx.set_dims(out, tuple(xd[:-1]) + (wd[0],))


def _per_channel(ctx, x, channel_dim: int, params, why: str) -> None:
    xd = ctx.dims(x)
    for p in params:
        if isinstance(p, torch.Tensor) and p.dim() == 1 and p.shape[0] == x.shape[channel_dim]:
            ctx.unify(ctx.dims(p)[0], xd[channel_dim], why)
            ctx.role(p, 0, "channel")
        elif isinstance(p, torch.Tensor):
            for dm in ctx.dims(p):
                ctx.block(dm, why + " (unexpected shape)")


def batch_norm(ctx, args, kwargs, out) -> None:
    x = arg(args, kwargs, 0, "input")
    params = [arg(args, kwargs, i, n) for i, n in ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))]
    _per_channel(ctx, x, 1 if x.dim() > 1 else 0, params, "batch norm")
    ctx.set_dims(out, ctx.dims(x))


def instance_norm(ctx, args, kwargs, out) -> None:
    x = arg(args, kwargs, 0, "input")
    params = [arg(args, kwargs, i, n) for i, n in ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))]
    _per_channel(ctx, x, 1, params, "instance norm")
    ctx.set_dims(out, ctx.dims(x))


def group_norm(ctx, args, kwargs, out) -> None:
    x, groups = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "num_groups")
    w, b = arg(args, kwargs, 2, "weight"), arg(args, kwargs, 3, "bias")
    xd = ctx.dims(x)
    if w is None:
        ctx.block(xd[1], "group norm without affine parameters")
    ctx.spaces.set_partitions(xd[1], groups, f"group norm groups in {ctx.where}")
    _per_channel(ctx, x, 1, [w, b], "group norm")
    ctx.set_dims(out, xd)


def layer_norm(ctx, args, kwargs, out) -> None:
    x, shape = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "normalized_shape")
    w, b = arg(args, kwargs, 2, "weight"), arg(args, kwargs, 3, "bias")
    xd = ctx.dims(x)
    k = len(shape)
    if w is None:
        for dm in xd[-k:]:
            ctx.block(dm, "norm without a weight (its shape is a constant)")
    for p in (w, b):
        if p is None:
            continue
        pd = ctx.dims(p)
        for i in range(k):
            ctx.unify(pd[i], xd[x.dim() - k + i], "layer norm")
            ctx.role(p, i, "channel")
    ctx.set_dims(out, xd)


def rms_norm(ctx, args, kwargs, out) -> None:
    x, shape, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "normalized_shape"), arg(args, kwargs, 2, "weight")
    layer_norm(ctx, (x, shape, w, None), {}, out)


def prelu(ctx, args, kwargs, out) -> None:
    x, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    if w.numel() > 1:
        _per_channel(ctx, x, 1 if x.dim() > 1 else 0, [w], "PReLU")
    ctx.set_dims(out, ctx.dims(x))


def embedding(ctx, args, kwargs, out) -> None:
    idx, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    wd = ctx.dims(w)
    ctx.block(wd[0], "embedding vocabulary")
    ctx.role(w, 1, "out")
    ctx.set_dims(out, tuple(ctx.dims(idx)) + (wd[1],))


def _expand(ctx, dm, inner: int):
    """The label of a dimension where each unit of ``dm`` is repeated ``inner`` times in a row."""
    if inner == 1:
        return dm
    resolved = ctx.spaces.resolve(dm)
    if len(resolved) == 1 and resolved[0].space is not None and resolved[0].outer == 1:
        s = resolved[0]
        return (Seg(s.space, s.size, s.inner * inner, 1),)
    ctx.block(dm, "channel multiplier over a composite input")
    return fixed(sum(s.length for s in resolved) * inner)


RULES = {
    "conv1d": conv, "conv2d": conv, "conv3d": conv,
    "conv_transpose1d": conv_transpose, "conv_transpose2d": conv_transpose, "conv_transpose3d": conv_transpose,
    "linear": linear,
    "batch_norm": batch_norm, "instance_norm": instance_norm, "group_norm": group_norm,
    "layer_norm": layer_norm, "rms_norm": rms_norm, "prelu": prelu, "embedding": embedding,
}
