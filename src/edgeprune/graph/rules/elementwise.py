"""Rules for ops that keep each element where it is: arithmetic, activations, casts, dropout."""
from __future__ import annotations

import torch

from edgeprune.graph.rules._args import arg
from edgeprune.graph.spaces import fixed
from edgeprune.graph.trace import tensors_in


def elementwise(ctx, args, kwargs, out) -> None:
    """Broadcasting ops: dimensions that line up (from the right, same size) are coupled."""
    outs = tensors_in(out)
    shape = outs[0].shape
    labels = [None] * len(shape)
    for t in tensors_in((args, kwargs)):
        if t.dim() > len(shape):
            raise NotImplementedError("input with more dims than the output")
        dims = ctx.dims(t)
        offset = len(shape) - t.dim()
        for i, n in enumerate(t.shape):
            j = offset + i
            if n == shape[j]:
                if labels[j] is None:
                    labels[j] = dims[i]
                else:
                    ctx.unify(labels[j], dims[i], "elementwise op")
            elif n != 1:
                raise NotImplementedError("shapes that do not broadcast")
    result = tuple(lab if lab is not None else fixed(n) for lab, n in zip(labels, shape))
    for t in outs:
        if t.shape == shape:
            ctx.set_dims(t, result)


def same(ctx, args, kwargs, out) -> None:
    """The output has its first tensor input's layout (casts, copies, dropout, activations)."""
    src = tensors_in(args[:1])[0] if tensors_in(args[:1]) else tensors_in((args, kwargs))[0]
    for t in tensors_in(out):
        if t.shape == src.shape:
            ctx.set_dims(t, ctx.dims(src))


def along_dim(ctx, args, kwargs, out) -> None:
    """Ops that mix values along one dim (softmax, normalize, cumsum): that dim can't be pruned."""
    x = arg(args, kwargs, 0, "input")
    dim = arg(args, kwargs, 1, "dim")
    if dim is None:
        dim = kwargs.get("dim", -1 if x.dim() else 0)
    dims = ctx.dims(x)
    ctx.block(dims[dim % x.dim()], "values mixed along this dim")
    for t in tensors_in(out):
        if t.shape == x.shape:
            ctx.set_dims(t, dims)


def like(ctx, args, kwargs, out) -> None:
    """``zeros_like(x)`` and friends follow ``x``'s shape, so they follow its labels."""
    x = arg(args, kwargs, 0, "input")
    if isinstance(out, torch.Tensor) and out.shape == x.shape:
        ctx.set_dims(out, ctx.dims(x))


_SAME = ["contiguous", "clone", "detach", "to", "type", "type_as", "float", "double", "half", "bfloat16",
         "cpu", "cuda", "requires_grad", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
         "feature_alpha_dropout", "hardswish", "relu", "relu6", "elu", "selu", "celu", "silu", "mish", "gelu",
         "softplus", "hardsigmoid", "hardtanh", "leaky_relu", "rrelu", "threshold", "logsigmoid", "softsign",
         "tanhshrink", "hardshrink", "softshrink", "sigmoid", "tanh", "long", "int", "bool", "abs", "neg",
         "nan_to_num", "detach_copy", "alias", "data", "__get__", "pin_memory", "share_memory",
         "coalesce", "as_subclass", "_to_copy", "zero", "uniform", "normal", "bernoulli", "exponential",
         "clip"]

_ELEMENTWISE = ["add", "sub", "rsub", "mul", "div", "pow", "maximum", "minimum", "where", "masked_fill",
                "lerp", "addcmul", "addcdiv", "fmod", "remainder", "eq", "ne", "lt", "le", "gt", "ge",
                "logical_and", "logical_or", "bitwise_and", "bitwise_or", "floor_divide", "true_divide",
                "copysign", "atan2", "hypot", "clamp_min", "clamp_max", "copy", "fill", "clamp", "xlogy",
                "heaviside", "fmax", "fmin", "logaddexp", "float_power", "lerp"]

RULES = {name: same for name in _SAME}
RULES.update({name: elementwise for name in _ELEMENTWISE})
# Softmax and normalize over a pruned dim stay valid models (statistics, like a norm layer's).
RULES.update({name: same for name in ("softmax", "log_softmax", "softmin", "normalize")})
RULES.update({name: along_dim for name in ("cumsum", "cumprod", "logcumsumexp")})
RULES.update({name: like for name in ("zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
                                      "randn_like", "new_zeros", "new_ones", "new_empty", "new_full")})
