"""Cutting within attention heads (``head_dims=True``): every head keeps the same number of dims.

By default a head is one unit (``SpaceTable.coarsen``: ``head_dim`` channels repeated for q, k and
v). With ``head_dims=True`` the heads stay and each one loses dims instead, as Torch-Pruning's
default does. The split ``qkv.reshape(B, N, 3, heads, head_dim)`` (or ``q.view(B, N, heads, -1)``)
then labels its dims with three fresh spaces: the pieces (q, k, v of a fused projection; kept
whole), the heads (kept whole) and the *positions* within a head (``head_dim`` of them). The
projection's channels become one space of ``heads * head_dim`` units (unit ``h * head_dim + d``),
partitioned by head, so that every head loses as many units as the others while each head chooses
its own. The position label stands for "the position within the head this element's head dim
index picks": it is consistent only while it travels with its head label and comes back to the
merge ``reshape(B, N, heads * head_dim)``, which labels the merged dim with the whole space again.

After the trace, :func:`settle` checks each such *fibre* (projection space, heads, positions):

* anything else that touched the positions refuses it: a parameter over the head dim (q/k
  LayerNorm weights, a rotary table), a slice or an interleave of it (rotary code pairs its dims),
  a tensor of fixed values combined with it (rotary cos/sin), an op that mixes values along it;
* fibres whose positions were contracted together (q with k at ``q @ k.T`` or in the attention op)
  get one space (q and k lose the same positions in each head), as do fibres counted by the same
  module attribute (``self.head_dim`` sizes every piece of the split alike);
* each fibre's space is partitioned by head.

A refused fibre names its module: the analysis traces again with that module's heads cut whole
(``edgeprune.graph.analysis``). The attention scale must stay that of the original head dim:
``F.scaled_dot_product_attention`` without ``scale=`` computes ``1 / sqrt(q.size(-1))``, which the
cut changes. Where q and k each come straight from a projection (only layout ops in between), the
change is folded into their rows (``Group.rescale``): each kept q and k row of head h is multiplied
by ``(d' / d) ** 0.25 * c_h ** 0.5``, so the logits are ``c_h * q . k / sqrt(d)`` over the kept dims,
with ``c_h`` the factor that keeps their spread as the weights estimate it
(``edgeprune.surgery.structured.rescale_factors``): 1 when only dead dims go (the cut is exact),
``sqrt(d / d')`` when live dims of equal norms go (SDPA's scale of the cut dim). Keeping
``q . k / sqrt(d)`` for live cuts instead shrank the logits and cost 3-4 points after fine-tuning
on the criteria zoo's ViT at 4x fewer MACs (docs/benchmarks.md). Elsewhere the
default scale refuses the fibre. The values are checked last, on a real copy
(``edgeprune.graph.probe.check_head_dims``): dims made dead and then removed must leave the
outputs unchanged, which catches a scale computed in Python (``/ math.sqrt(q.size(-1))``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch.nn as nn

from edgeprune.graph.spaces import Seg
from edgeprune.plan import Attr, Slot

if TYPE_CHECKING:
    from edgeprune.graph.trace import TraceResult


@dataclass
class Fibre:
    """One split of a projection's channels into (pieces x) heads x positions, cut within heads."""

    module: str  # the module whose forward made the split (what a refusal names)
    total: int  # space of heads * head_dim units: unit h * head_dim + d
    source: int  # the projection's channel space as it was before the split (its rows)
    heads: int  # space labelling the head dim (kept whole)
    positions: int  # space labelling the head-dim dim
    pieces: int | None  # space labelling the q/k/v dim of a fused projection (kept whole), or None
    n_pieces: int
    n_heads: int
    head_dim: int
    attrs: list[Attr] = field(default_factory=list)


@dataclass(frozen=True)
class Fold:
    """An attention op whose scale follows the head dim: q from (fibre, piece), k from (fibre, piece)."""

    query: tuple[int, int]
    key: tuple[int, int]
    where: str


_ROTARY_WORDS = ("rotary", "rope", "inv_freq")


def rotary_code(model: nn.Module) -> str | None:
    """The first module, parameter or buffer whose name says rotary position embedding, or None.

    Rotary code rotates pairs of dims within a head; removing one dim of a pair breaks the
    rotation, so a model that has any is not cut within its heads. This is the explicit refusal;
    the trace refuses the same models by what the code does (the rotation slices the head dim and
    multiplies it by cos/sin tables).
    """
    for name, module in model.named_modules():
        if any(w in type(module).__name__.lower() or w in name.rpartition(".")[2].lower() for w in _ROTARY_WORDS):
            return f"{type(module).__name__} {name or '(the model)'}"
    for name, _ in list(model.named_parameters()) + list(model.named_buffers()):
        if any(w in name.rpartition(".")[2].lower() for w in _ROTARY_WORDS):
            return name
    return None


def fixed_head_dims(model: nn.Module) -> dict[str, str]:
    """Attention modules whose kernel computes the head dim itself: ``{module: why}``.

    ``nn.MultiheadAttention`` (torchvision's ViT) runs one fused op that takes ``head_dim`` as
    ``embed_dim // num_heads`` and its scale from it; it is not cut within heads.
    """
    return {name: "nn.MultiheadAttention computes head_dim as embed_dim // num_heads inside its fused kernel"
            for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}


def head_dim_attrs(attributes, module: str, n_pieces: int, n_heads: int, head_dim: int) -> list[Attr]:
    """The module's integer attributes that follow a cut within heads, by value *and* name.

    ``head_dim`` (or ``dim_head``, ``head_size``) equal to the head dim counts the kept units per
    head (``divisor`` = heads); a width (``attn_dim``, ``all_head_size``) equal to heads x head_dim
    (x pieces) counts them all. The head count itself does not change.
    """
    out = []
    width = n_heads * head_dim
    for name, value, in_config in attributes:
        if in_config:  # a config is shared by every layer: its head_dim is not this layer's to change
            continue
        leaf = name.rpartition(".")[2].lower()
        if value == head_dim and any(w in leaf for w in ("head_dim", "dim_head", "head_size")):
            out.append(Attr(module, name, 1, divisor=n_heads))
        elif any(w in leaf for w in ("dim", "size", "width", "channels")) and "head_dim" not in leaf:
            for per_unit in dict.fromkeys((1, n_pieces)):
                if value == width * per_unit:
                    out.append(Attr(module, name, per_unit))
                    break
    return out


def settle(tr: TraceResult) -> dict[str, str]:
    """Check and couple the fibres of a trace; return ``{module: reason}`` for those refused.

    Nothing is coupled when some fibre is refused: the caller traces again with the refused
    modules' heads cut whole, and settles that trace. (Modules the tracer already cut whole, for
    rotary code or ``nn.MultiheadAttention``, are in ``tr.head_dim_refusals``, not returned.)
    """
    spaces = tr.spaces
    refused: dict[str, str] = {}
    by_positions: dict[int, list[int]] = {}
    for f in tr.fibres:  # heads and q/k/v pieces stay whole (blocked only now, so labels flowed through reshapes)
        spaces.block_space(f.heads, f"heads are kept whole when their dims are cut (head_dims=True) in {f.module}")
        if f.pieces is not None:
            spaces.block_space(f.pieces, f"q, k and v of a fused projection in {f.module}")
    for i, f in enumerate(tr.fibres):
        p = spaces.find(f.positions)
        by_positions.setdefault(p, []).append(i)
        reason = _positions_used_elsewhere(tr, f, p)
        if reason:
            refused.setdefault(f.module, reason)
    for members in by_positions.values():
        heads = {spaces.find(tr.fibres[i].heads) for i in members}
        shapes = {(tr.fibres[i].n_heads, tr.fibres[i].head_dim) for i in members}
        if len(heads) > 1 or len(shapes) > 1:
            for i in members:
                refused.setdefault(tr.fibres[i].module, "head dims contracted across different heads")
    rescales, fold_refusals = _rescale_slots(tr)
    for module, reason in fold_refusals.items():
        refused.setdefault(module, reason)
    if refused:
        return refused
    # q and k contracted together lose the same positions; so do fibres that one attribute sizes alike
    by_attr: dict[tuple[str, str], list[int]] = {}
    for i, f in enumerate(tr.fibres):
        for a in f.attrs:
            by_attr.setdefault((a.module, a.name), []).append(i)
    for members in list(by_positions.values()) + list(by_attr.values()):
        first = tr.fibres[members[0]]
        for i in members[1:]:
            other = tr.fibres[i]
            spaces.unify(_whole(spaces, first.total), _whole(spaces, other.total),
                         f"head dims of {first.module} contracted or sized together")
    for f in tr.fibres:
        spaces.set_partitions(_whole(spaces, f.total), f.n_heads, f"head dims cut per head in {f.module}")
        tr.positions[spaces.find(f.positions)] = (f.total, f.n_heads)
    for total, slots in rescales.items():
        tr.rescales.setdefault(spaces.find(total), []).extend(slots)
    return {}


def _whole(spaces, s: int) -> tuple[Seg, ...]:
    return (Seg(s, spaces.size[s]),)


def _positions_used_elsewhere(tr: TraceResult, f: Fibre, p: int) -> str | None:
    spaces = tr.spaces
    for name, dims in tr.param_dims.items():
        for dm in dims:
            if p in spaces.atoms(dm):
                return (f"'{name}' lies along the head dim (a q/k norm, a rotary table, keys or values shared by "
                        f"several query heads): one vector for heads that would keep different dims")
    if p in spaces.derived or spaces.partitions.get(p, 1) > 1:
        return "its head dim is sliced or regrouped (rotary position code pairs the dims of a head)"
    if p in spaces.blocked:
        return f"its head dim cannot be cut: {spaces.blocked[p]}"
    return None


def _rescale_slots(tr: TraceResult) -> tuple[dict[int, list[Slot]], dict[str, str]]:
    """The q and k rows to rescale for each attention whose scale follows the head dim."""
    out: dict[int, list[Slot]] = {}
    refused: dict[str, str] = {}
    for fold in tr.folds:
        slots: list[Slot] = []
        fq, fk = tr.fibres[fold.query[0]], tr.fibres[fold.key[0]]
        for (_, piece), f in ((fold.query, fq), (fold.key, fk)):
            rows = _producer_rows(tr, f, piece)
            if rows is None:
                refused.setdefault(f.module, f"the attention at {fold.where} computes its scale from the head dim, "
                                             f"and its query/key do not come straight from one projection's rows")
                break
            slots.extend(rows)
        else:
            if len(set(slots)) != len(slots):
                refused.setdefault(fq.module, f"the attention at {fold.where} reads query and key from the same rows")
                continue
            out.setdefault(fq.total, []).extend(slots)
    return out, refused


def _producer_rows(tr: TraceResult, f: Fibre, piece: int) -> list[Slot] | None:
    """The rows of ``piece`` of the projection that ``f`` split: its weight's and its bias's."""
    spaces = tr.spaces
    source = spaces.find(f.source)
    found = [(name, d) for name, dims in tr.param_dims.items() for d, dm in enumerate(dims)
             if len(dm) == 1 and dm[0].space is not None and spaces.find(dm[0].space) == source]
    roles = {(name, d): tr.roles.get((name, d), "channel") for name, d in found}
    producers = [k for k, r in roles.items() if r == "out"]
    if len(producers) != 1:
        return None
    owner = producers[0][0].rpartition(".")[0]
    if any(r != "out" and (k[0].rpartition(".")[0] != owner or not k[0].endswith("bias")) for k, r in roles.items()):
        return None  # a norm or another layer on the projection's output: its rows are not q's alone
    offset = piece * f.n_heads * f.head_dim if f.n_pieces > 1 else 0
    return [Slot(name, d, roles[(name, d)], offset) for name, d in found]
