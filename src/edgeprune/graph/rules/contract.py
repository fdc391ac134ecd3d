"""Rules for contractions: matmul and friends, einsum, scaled dot-product attention."""
from __future__ import annotations

from edgeprune.graph.rules._args import arg
from edgeprune.graph.spaces import fixed


def _batch(ctx, a_dims, b_dims, n_out):
    """Broadcast batch dims of two operands (right-aligned), coupling the ones that line up."""
    labels = []
    for k in range(n_out):
        ia, ib = k - (n_out - len(a_dims)), k - (n_out - len(b_dims))
        la = a_dims[ia] if ia >= 0 else None
        lb = b_dims[ib] if ib >= 0 else None
        # Eager grouped-query attention meets here: key/value heads repeated in place (repeat_kv:
        # expand, then merge) against the query heads. Unifying them defines each query head as a
        # repeat of its key/value head, so whole key/value groups go with their query heads.
        if la is not None and lb is not None and sum(s.length for s in la) == sum(s.length for s in lb):
            ctx.unify(la, lb, "batched matmul")
            labels.append(la)
        else:
            pick = [x for x in (la, lb) if x is not None and sum(s.length for s in x) != 1]
            labels.append(pick[0] if pick else (la or lb))
    return labels


def matmul(ctx, args, kwargs, out) -> None:
    a, b = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "other")
    ad, bd = ctx.dims(a), ctx.dims(b)
    if a.dim() == 1 and b.dim() == 1:
        ctx.unify(ad[0], bd[0], "dot product")
        ctx.set_dims(out, ())
    elif b.dim() == 1:
        ctx.unify(ad[-1], bd[0], "matrix-vector product")
        ctx.set_dims(out, tuple(ad[:-1]))
    elif a.dim() == 1:
        ctx.unify(ad[0], bd[-2], "vector-matrix product")
        ctx.set_dims(out, tuple(bd[:-2]) + (bd[-1],))
    else:
        ctx.unify(ad[-1], bd[-2], "matmul contraction")
        batch = _batch(ctx, ad[:-2], bd[:-2], out.dim() - 2)
        ctx.set_dims(out, tuple(batch) + (ad[-2], bd[-1]))
    if b.dim() == 2 and ctx.param_name(b) is not None:
        # x @ W with a stored (in, out) weight: a linear layer with its weight transposed (HF's Conv1D)
        ctx.role(b, 0, "in")
        ctx.role(b, 1, "out")
        ctx.note_features(bd[0], bd[1], b.shape[0], b.shape[1])


def addmm(ctx, args, kwargs, out) -> None:
    bias, a, b = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "mat1"), arg(args, kwargs, 2, "mat2")
    matmul(ctx, (a, b), {}, out)
    od, bd = ctx.dims(out), ctx.dims(bias)
    for k in range(1, bias.dim() + 1):
        if bias.shape[-k] == out.shape[-k]:
            ctx.unify(od[-k], bd[-k], "matmul bias")
    if bias.dim() == 1 and ctx.param_name(bias) is not None and bias.shape[0] == out.shape[-1]:
        ctx.role(bias, 0, "channel")


def einsum(ctx, args, kwargs, out) -> None:
    equation = args[0]
    operands = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    if "..." in equation or "->" not in equation:
        raise NotImplementedError("einsum with ellipsis or implicit output")
    lhs, rhs = equation.replace(" ", "").split("->")
    letters: dict[str, object] = {}
    for spec, t in zip(lhs.split(","), operands):
        for ch, dm in zip(spec, ctx.dims(t)):
            if ch in letters:
                ctx.unify(letters[ch], dm, "einsum index")
            else:
                letters[ch] = dm
    ctx.set_dims(out, tuple(letters.get(ch, fixed(n)) for ch, n in zip(rhs, out.shape)))


def attention(ctx, args, kwargs, out) -> None:
    q, k, v = (arg(args, kwargs, i, n) for i, n in ((0, "query"), (1, "key"), (2, "value")))
    mask = arg(args, kwargs, 3, "attn_mask")
    qd, kd, vd = ctx.dims(q), ctx.dims(k), ctx.dims(v)
    if arg(args, kwargs, 6, "scale") is None and not (getattr(ctx, "fibres", None) and
                                                       ctx.fold_attention_scale(q, k, qd[-1], kd[-1])):
        ctx.block(qd[-1], "attention scale computed from the head dim")
    ctx.unify(qd[-1], kd[-1], "attention query/key dim")
    ctx.unify(kd[-2], vd[-2], "attention keys/values")
    if arg(args, kwargs, 7, "enable_gqa", False) and q.dim() >= 3 and q.shape[-3] != k.shape[-3]:
        # grouped-query attention inside the op: fewer key/value heads than query heads
        for shared in (kd, vd):
            if not ctx.share_heads(qd[-3], shared[-3], "attention"):
                ctx.block(qd[-3], "grouped-query attention heads that do not divide evenly")
                ctx.block(shared[-3], "grouped-query attention heads that do not divide evenly")
        kd = kd[:-3] + (qd[-3],) + kd[-2:]
        vd = vd[:-3] + (qd[-3],) + vd[-2:]
    batch = _batch(ctx, qd[:-2], kd[:-2], q.dim() - 2)
    batch = _batch(ctx, batch, vd[:-2], q.dim() - 2)
    if mask is not None:
        for dm in ctx.dims(mask):
            ctx.block(dm, "attention mask")
    ctx.set_dims(out, tuple(batch) + (qd[-2], vd[-1]))


RULES = {"matmul": matmul, "mm": matmul, "bmm": matmul, "addmm": addmm, "baddbmm": addmm, "einsum": einsum,
         "scaled_dot_product_attention": attention}
