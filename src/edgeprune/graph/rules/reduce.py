"""Rules for reductions, pooling, resizing and padding."""
from __future__ import annotations

import torch

from edgeprune.graph.rules._args import arg, dim_list
from edgeprune.graph.rules.elementwise import elementwise
from edgeprune.graph.spaces import fixed
from edgeprune.graph.trace import tensors_in


def _reduce(ctx, x, dim, keepdim, out, indices: bool) -> None:
    """Statistics over a pruned dim stay valid (like a norm layer's); indices into it would not."""
    xd = ctx.dims(x)
    reduced = dim_list(dim, x.dim())
    for d in reduced:
        if indices:
            ctx.block(xd[d], "indices taken along this dim would change meaning")
    for t in tensors_in(out):
        if t.dim() == x.dim():
            ctx.set_dims(t, tuple(fixed(1) if i in reduced else xd[i] for i in range(x.dim())))
        elif t.dim() == x.dim() - len(reduced):
            ctx.set_dims(t, tuple(xd[i] for i in range(x.dim()) if i not in reduced))


def _dim_keepdim(args, kwargs, first: int = 1):
    dim = arg(args, kwargs, first, "dim")
    if isinstance(dim, torch.dtype):
        dim = None
    return dim, bool(arg(args, kwargs, first + 1, "keepdim", False))


def reduction(ctx, args, kwargs, out) -> None:
    dim, keepdim = _dim_keepdim(args, kwargs)
    if isinstance(dim, bool):  # std/var(x, unbiased) legacy form
        dim = kwargs.get("dim")
    _reduce(ctx, args[0], dim, keepdim, out, indices=isinstance(out, tuple))


def arg_reduction(ctx, args, kwargs, out) -> None:
    dim, keepdim = _dim_keepdim(args, kwargs)
    _reduce(ctx, args[0], dim, keepdim, out, indices=True)


def norm(ctx, args, kwargs, out) -> None:
    dim = arg(args, kwargs, 2, "dim")
    _reduce(ctx, args[0], dim, arg(args, kwargs, 3, "keepdim", False), out, indices=False)


def max_min(ctx, args, kwargs, out) -> None:
    """``max(x)``, ``max(x, dim)`` reduce; ``max(x, y)`` is elementwise."""
    other = arg(args, kwargs, 1, "other")
    if isinstance(other, torch.Tensor):
        elementwise(ctx, args, kwargs, out)
        return
    reduction(ctx, args, kwargs, out)


def channelwise(spatial: int | None):
    """Pooling and resizing: batch and channel dims pass through, the last ``spatial`` dims are new."""
    def rule(ctx, args, kwargs, out) -> None:
        x = args[0] if args else kwargs["input"]
        xd = ctx.dims(x)
        k = spatial if spatial is not None else x.dim() - 2
        for t in tensors_in(out):
            if t.dim() == x.dim():
                ctx.set_dims(t, tuple(xd[:x.dim() - k]) + tuple(fixed(n) for n in t.shape[x.dim() - k:]))
    return rule


def pad(ctx, args, kwargs, out) -> None:
    x, amounts = args[0], arg(args, kwargs, 1, "pad")
    labels = list(ctx.dims(x))
    for k in range(len(amounts) // 2):
        d = x.dim() - 1 - k
        if amounts[2 * k] or amounts[2 * k + 1]:
            ctx.block(labels[d], "padded dim")
            labels[d] = fixed(out.shape[d])
    ctx.set_dims(out, tuple(labels))


RULES = {"norm": norm, "max": max_min, "min": max_min}
RULES.update({name: reduction for name in ("sum", "nansum", "mean", "nanmean", "amax", "amin", "std", "var", "prod",
                                           "logsumexp", "all", "any", "std_mean", "var_mean", "aminmax",
                                           "count_nonzero", "median", "nanmedian", "mode")})
RULES.update({name: arg_reduction for name in ("argmax", "argmin", "kthvalue")})
for _k in (1, 2, 3):
    for _name in ("max_pool{}d", "avg_pool{}d", "adaptive_avg_pool{}d", "adaptive_max_pool{}d", "lp_pool{}d",
                  "max_pool{}d_with_indices", "adaptive_max_pool{}d_with_indices", "fractional_max_pool{}d",
                  "_adaptive_avg_pool{}d", "_max_pool{}d"):
        RULES[_name.format(_k)] = channelwise(_k)
for _name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
    RULES[_name] = channelwise(None)
RULES["pad"] = pad
