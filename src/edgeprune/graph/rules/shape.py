"""Rules for ops that rearrange dimensions: view/reshape/flatten, permute/transpose, expand/repeat."""
from __future__ import annotations

import math

import torch

from edgeprune.graph.rules._args import arg
from edgeprune.graph.spaces import Seg, Unresolvable, fixed


def _is_fixed(ctx, dm) -> bool:
    """No unit of this dim can go: fixed runs, or spaces already blocked (a kernel size, say)."""
    return all(s.space is None or ctx.spaces.is_blocked(s.space) for s in dm)


def reshape(ctx, args, kwargs, out) -> None:
    """Any op that only regroups dimensions (view, reshape, flatten, unflatten, squeeze, unsqueeze).

    Dimensions are matched in chunks of equal element count. A channel merged with the dims after
    it becomes a segment with ``inner`` repeats; a split is followed only when it undoes such a merge.
    """
    x = args[0]
    xd = ctx.dims(x)
    in_shape, out_shape = list(x.shape), list(out.shape)
    if 0 in in_shape or 0 in out_shape:
        raise NotImplementedError("empty tensor")
    labels = [fixed(n) for n in out_shape]
    for i, n in enumerate(in_shape):
        if n == 1 and not _is_fixed(ctx, xd[i]):
            ctx.block(xd[i], "size-1 dim regrouped")
    ins = [i for i, n in enumerate(in_shape) if n != 1]
    outs = [j for j, n in enumerate(out_shape) if n != 1]
    i = j = 0
    while i < len(ins) and j < len(outs):
        ci, cj = [ins[i]], [outs[j]]
        pi, pj = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                ci.append(ins[i]); pi *= in_shape[ins[i]]; i += 1  # noqa: E702
            else:
                cj.append(outs[j]); pj *= out_shape[outs[j]]; j += 1  # noqa: E702
        _regroup(ctx, xd, in_shape, out_shape, ci, cj, labels)
    ctx.set_dims(out, tuple(labels))


def _regroup(ctx, xd, in_shape, out_shape, ci, cj, labels) -> None:
    tracked = [k for k in ci if not _is_fixed(ctx, xd[k])]
    if not tracked:
        return
    if len(ci) == 1 and len(cj) == 1:
        labels[cj[0]] = xd[ci[0]]
        return
    if len(cj) == 1 and len(ci) == 2 and getattr(ctx, "fibres", None):
        merged = ctx.merge_head_dims(xd[ci[0]], xd[ci[1]])  # heads x head dims cut within heads, merged back
        if merged is not None:
            labels[cj[0]] = merged
            return
    if len(cj) == 1:
        # A merge keeps the units of its first tracked dim; any other tracked dim (a kernel dim of a
        # flattened weight, say) is frozen so its size can be a fixed multiplier.
        for k in tracked[1:]:
            ctx.block(xd[k], "merged into another pruned dim")
        p = ci.index(tracked[0])
        before = math.prod(in_shape[k] for k in ci[:p])
        after = math.prod(in_shape[k] for k in ci[p + 1:])
        try:
            labels[cj[0]] = ctx.spaces.spread(xd[tracked[0]], inner=after, outer=before)
            return
        except Unresolvable:
            pass
    if len(ci) == 1 and len(cj) > 1:
        try:
            resolved = ctx.spaces.resolve(xd[ci[0]])
        except Unresolvable:
            resolved = ()
        if len(resolved) == 1 and resolved[0].space is not None:
            # Undoing a flatten: dims before the unit dim multiply to `outer`, dims after it to `inner`.
            s = resolved[0]
            sizes = [out_shape[k] for k in cj]
            for pos, n in enumerate(sizes):
                if n == s.size and math.prod(sizes[:pos]) == s.outer and math.prod(sizes[pos + 1:]) == s.inner:
                    labels[cj[pos]] = (Seg(s.space, s.size),)
                    return
            last = ci[0] == len(in_shape) - 1
            if s.plain and last and not ctx.spaces.is_blocked(s.space):
                # Splitting the channels of a channels-last tensor, as attention splits (3 x) heads x
                # head_dim: the dim before the last becomes the unit (a head), what follows it is inside
                # a unit, what precedes it repeats. The probe checks that the forward agrees
                # (num_heads updated, and so on). Splits of NCHW channels (channel groups of split or
                # bottleneck attention, a (B, C, 1, 1) gate viewed as blocks) stay blocked: there the
                # "unit" is not a head, and bat_resnext26ts lost every group to the layouts that followed.
                pos = len(sizes) - 2
                if cj[-1] == len(out_shape) - 1 and cj[pos] == len(out_shape) - 2 and ctx.cuts_head_dims():
                    split = ctx.split_head_dims(s, sizes)  # head_dims=True: each head keeps fewer dims
                    if split is not None:
                        for k, label in zip(cj, split):
                            labels[k] = label
                        return
                labels[cj[pos]] = ctx.split_units(s, sizes[pos], math.prod(sizes[pos + 1:]), math.prod(sizes[:pos]))
                return
    for k in tracked:
        ctx.block(xd[k], "reshape that splits or interleaves channels")


def permute(ctx, args, kwargs, out) -> None:
    x = args[0]
    order = kwargs.get("dims", args[1:] if len(args) > 2 else (args[1] if len(args) > 1 else None))
    if isinstance(order, int):
        order = [order]
    xd = ctx.dims(x)
    ctx.set_dims(out, tuple(xd[d % x.dim()] for d in order))


def transpose(ctx, args, kwargs, out) -> None:
    x = args[0]
    a, b = arg(args, kwargs, 1, "dim0"), arg(args, kwargs, 2, "dim1")
    labels = list(ctx.dims(x))
    a, b = a % x.dim(), b % x.dim()
    labels[a], labels[b] = labels[b], labels[a]
    ctx.set_dims(out, tuple(labels))


def t(ctx, args, kwargs, out) -> None:
    labels = ctx.dims(args[0])
    ctx.set_dims(out, tuple(reversed(labels)) if len(labels) == 2 else labels)


def mT(ctx, args, kwargs, out) -> None:  # noqa: N802
    labels = list(ctx.dims(args[0]))
    labels[-1], labels[-2] = labels[-2], labels[-1]
    ctx.set_dims(out, tuple(labels))


def movedim(ctx, args, kwargs, out) -> None:
    x = args[0]
    src, dst = arg(args, kwargs, 1, "source"), arg(args, kwargs, 2, "destination")
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    order = [None] * x.dim()
    for s, d in zip(src, dst):
        order[d % x.dim()] = s % x.dim()
    rest = iter(k for k in range(x.dim()) if k not in {s % x.dim() for s in src})
    order = [o if o is not None else next(rest) for o in order]
    xd = ctx.dims(x)
    ctx.set_dims(out, tuple(xd[k] for k in order))


def expand(ctx, args, kwargs, out) -> None:
    """expand/broadcast_to: dims that keep their size keep their labels; broadcast ones are new."""
    _tile(ctx, args[0], out, block_changed=False)


def repeat(ctx, args, kwargs, out) -> None:
    """repeat/tile: as expand, but a repeated tracked dim would repeat its units, so it is frozen."""
    _tile(ctx, args[0], out, block_changed=True)


def _tile(ctx, x, out, block_changed: bool) -> None:
    xd = ctx.dims(x)
    offset = out.dim() - x.dim()
    labels = [fixed(n) for n in out.shape]
    for i, n in enumerate(x.shape):
        if n == out.shape[offset + i]:
            labels[offset + i] = xd[i]
        elif block_changed:
            ctx.block(xd[i], "repeated dim")
    ctx.set_dims(out, tuple(labels))


RULES = {name: reshape for name in ("view", "reshape", "_reshape_alias", "_unsafe_view", "flatten", "unflatten",
                                    "squeeze", "unsqueeze", "view_as", "reshape_as", "ravel", "atleast_2d",
                                    "atleast_3d", "atleast_1d")}
RULES.update({"permute": permute, "transpose": transpose, "swapaxes": transpose, "swapdims": transpose,
              "t": t, "T": t, "mT": mT, "movedim": movedim, "moveaxis": movedim,
              "expand": expand, "expand_as": expand, "broadcast_to": expand,
              "repeat": repeat, "tile": repeat})

_ = torch  # keep the import: rules may be extended with torch-typed checks
