"""Rules for ops that cut or join tensors: indexing, cat/stack, split/chunk, narrow/select."""
from __future__ import annotations

import torch

from edgeprune.graph.rules._args import arg
from edgeprune.graph.spaces import fixed
from edgeprune.graph.trace import tensors_in


def getitem(ctx, args, kwargs, out) -> None:
    x, index = args[0], args[1]
    xd = ctx.dims(x)
    index = index if isinstance(index, tuple) else (index,)
    if _gathers_rows(index):
        # x[idx] with an integer tensor: rows are gathered (a relative-position bias table read by
        # its index buffer); the gathered dim is blocked, the dims after it keep their units
        ctx.block(xd[0], "indexed along this dim")
        ctx.set_dims(out, tuple(fixed(n) for n in index[0].shape) + tuple(xd[1:]))
        return
    if any(isinstance(e, (torch.Tensor, list)) or isinstance(e, bool) for e in index):
        raise NotImplementedError("advanced indexing")
    consuming = sum(1 for e in index if e is not None and e is not Ellipsis)
    labels, i = [], 0
    for e in index:
        if e is Ellipsis:
            for _ in range(x.dim() - consuming):
                labels.append(xd[i]); i += 1  # noqa: E702
        elif e is None:
            labels.append(fixed(1))
        elif isinstance(e, int):
            if consuming == 1:  # qkv[0]: the q piece of a fused split
                ctx.note_pieces(xd[i], [(out, e % x.shape[i])])
            ctx.block(xd[i], "a single index taken along this dim")
            i += 1
        elif isinstance(e, slice):
            start, stop, step = e.indices(x.shape[i])
            if step == 1 and (start, stop) == (0, x.shape[i]):
                labels.append(xd[i])
            elif step == 1:
                labels.append(ctx.spaces.slice(xd[i], start, max(start, stop), f"slice in {ctx.where}"))
            else:
                ctx.block(xd[i], "strided slice")
                labels.append(fixed(len(range(start, stop, step))))
            i += 1
        else:
            raise NotImplementedError(f"index of type {type(e).__name__}")
    labels.extend(xd[i:])
    ctx.set_dims(out, tuple(labels))


def _gathers_rows(index: tuple) -> bool:
    """``x[idx]`` or ``x[idx, :, ...]``: one integer index tensor on the first dim, nothing else indexed."""
    first, rest = index[0], index[1:]
    return (isinstance(first, torch.Tensor) and not first.dtype.is_floating_point and first.dtype != torch.bool
            and all(e is Ellipsis or e == slice(None) for e in rest))


def cat(ctx, args, kwargs, out) -> None:
    tensors = [t for t in arg(args, kwargs, 0, "tensors") if not (t.dim() == 1 and t.shape[0] == 0)]
    dim = arg(args, kwargs, 1, "dim", 0) % out.dim()
    joined = tuple(seg for t in tensors for seg in ctx.dims(t)[dim])
    first = ctx.dims(tensors[0])
    for t in tensors[1:]:
        for k, dm in enumerate(ctx.dims(t)):
            if k != dim:
                ctx.unify(first[k], dm, "concatenated tensors")
    labels = list(first)
    labels[dim] = joined
    ctx.set_dims(out, tuple(labels))


def stack(ctx, args, kwargs, out) -> None:
    tensors = list(arg(args, kwargs, 0, "tensors"))
    dim = arg(args, kwargs, 1, "dim", 0) % out.dim()
    first = ctx.dims(tensors[0])
    for t in tensors[1:]:
        for a, b in zip(first, ctx.dims(t)):
            ctx.unify(a, b, "stacked tensors")
    labels = list(first)
    labels.insert(dim, fixed(len(tensors)))
    ctx.set_dims(out, tuple(labels))


def split(ctx, args, kwargs, out) -> None:
    """split, chunk, tensor_split, split_with_sizes: each piece gets its range of the labels."""
    x = args[0]
    dim = arg(args, kwargs, 2, "dim", 0) % x.dim()
    xd = ctx.dims(x)
    start = 0
    for piece in tensors_in(out):
        stop = start + piece.shape[dim]
        labels = list(xd)
        labels[dim] = ctx.spaces.slice(xd[dim], start, stop, f"split in {ctx.where}") if stop > start else fixed(0)
        ctx.set_dims(piece, tuple(labels))
        start = stop


def chunk(ctx, args, kwargs, out) -> None:
    """chunk: the piece sizes follow the input's size (see :func:`_equal_pieces`)."""
    _equal_pieces(ctx, args, kwargs, out, "chunk", arg(args, kwargs, 1, "chunks"))


def tensor_split(ctx, args, kwargs, out) -> None:
    """tensor_split: into a number of sections as chunk does; at given indices, as split does."""
    _equal_pieces(ctx, args, kwargs, out, "tensor_split", arg(args, kwargs, 1, "indices_or_sections"))


def _equal_pieces(ctx, args, kwargs, out, name: str, sections) -> None:
    """Cut into a number of pieces whose sizes the op computes from the input's size.

    After pruning, the op cuts the smaller input into pieces of its own choosing, so each piece must
    lose as many units as the others: equal pieces are unified (unit i of each goes together), and
    unequal ones (an odd size) are blocked. The probe, which removes one unit from every group at
    once, cannot see this: it shrinks every piece alike.
    """
    split(ctx, args, kwargs, out)
    if not isinstance(sections, int):
        return  # at given indices: literal sizes, which the probe checks
    x, dim = args[0], arg(args, kwargs, 2, "dim", 0) % args[0].dim()
    pieces = tensors_in(out)
    if len({p.shape[dim] for p in pieces}) > 1:
        ctx.block(ctx.dims(x)[dim], f"{name} into unequal pieces")
        return
    for p in pieces[1:]:
        ctx.unify(ctx.dims(pieces[0])[dim], ctx.dims(p)[dim], f"pieces of {name}")


def narrow(ctx, args, kwargs, out) -> None:
    x, dim = args[0], arg(args, kwargs, 1, "dim") % args[0].dim()
    start, length = arg(args, kwargs, 2, "start"), arg(args, kwargs, 3, "length")
    start = int(start) % x.shape[dim] if start < 0 else int(start)
    labels = list(ctx.dims(x))
    labels[dim] = ctx.spaces.slice(labels[dim], start, start + int(length), f"narrow in {ctx.where}")
    ctx.set_dims(out, tuple(labels))


def _drop_dim(ctx, x, dim, out, why, index: int | None = None) -> None:
    xd = list(ctx.dims(x))
    dim %= x.dim()
    pieces = tensors_in(out)
    ctx.note_pieces(xd[dim], [(t, i if index is None else index % x.shape[dim]) for i, t in enumerate(pieces)])
    ctx.block(xd[dim], why)
    del xd[dim]
    for t in tensors_in(out):
        ctx.set_dims(t, tuple(xd))


def select(ctx, args, kwargs, out) -> None:
    _drop_dim(ctx, args[0], arg(args, kwargs, 1, "dim"), out, "a single index taken along this dim",
              index=arg(args, kwargs, 2, "index"))


def unbind(ctx, args, kwargs, out) -> None:
    _drop_dim(ctx, args[0], arg(args, kwargs, 1, "dim", 0), out, "unbound along this dim")


def index_select(ctx, args, kwargs, out) -> None:
    x, dim = args[0], arg(args, kwargs, 1, "dim") % args[0].dim()
    labels = list(ctx.dims(x))
    ctx.block(labels[dim], "indexed along this dim")
    labels[dim] = fixed(out.shape[dim])
    ctx.set_dims(out, tuple(labels))


def glu(ctx, args, kwargs, out) -> None:
    x, dim = args[0], arg(args, kwargs, 1, "dim", -1) % args[0].dim()
    xd = list(ctx.dims(x))
    half = x.shape[dim] // 2
    a = ctx.spaces.slice(xd[dim], 0, half, f"glu in {ctx.where}")
    b = ctx.spaces.slice(xd[dim], half, 2 * half, f"glu in {ctx.where}")
    ctx.unify(a, b, "gated halves")
    xd[dim] = a
    ctx.set_dims(out, tuple(xd))


def roll(ctx, args, kwargs, out) -> None:
    x = args[0]
    dims = arg(args, kwargs, 2, "dims")
    xd = ctx.dims(x)
    for d in ([dims] if isinstance(dims, int) else (dims or range(x.dim()))):
        ctx.block(xd[d % x.dim()], "rolled along this dim")
    ctx.set_dims(out, xd)


def flip(ctx, args, kwargs, out) -> None:
    x = args[0]
    dims = arg(args, kwargs, 1, "dims")
    xd = ctx.dims(x)
    for d in ([dims] if isinstance(dims, int) else dims):
        ctx.block(xd[d % x.dim()], "flipped along this dim")
    ctx.set_dims(out, xd)


RULES = {"__getitem__": getitem, "cat": cat, "concat": cat, "concatenate": cat, "stack": stack,
         "split": split, "chunk": chunk, "tensor_split": tensor_split, "split_with_sizes": split, "unsafe_split": split,
         "narrow": narrow, "select": select, "unbind": unbind, "index_select": index_select, "glu": glu,
         "roll": roll, "flip": flip}
