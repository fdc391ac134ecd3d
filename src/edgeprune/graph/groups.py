"""Groups: the prunable units of a traced model, each with every tensor slice coupled to it."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from edgeprune.graph.spaces import Seg, Unresolvable
from edgeprune.graph.trace import TraceResult
import torch

from edgeprune.plan import Attr, GroupPlan, Plan, Slot


@dataclass
class Group:
    """A set of coupled (tensor, dim, indices) slots whose units are removed together.

    ``partitions`` > 1 means units must go in equal numbers from that many contiguous blocks
    (grouped convolutions, group norm).
    """

    name: str
    root: int
    size: int
    slots: list[Slot]
    partitions: int = 1
    unit: int = 1
    modules: list[str] = field(default_factory=list)
    attrs: list[Attr] = field(default_factory=list)  # module attributes that count the units (num_heads)
    rescale: list[Slot] = field(default_factory=list)  # q/k rows that keep the attention scale (GroupPlan.rescale)

    @property
    def block_size(self) -> int:
        return self.size // self.partitions


def module_of(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def build_groups(tr: TraceResult) -> tuple[list[Group], dict[str, str]]:
    """Turn the traced spaces into groups.

    Returns:
        (groups that can be pruned, {name: reason} for groups that cannot).
    """
    spaces = tr.spaces
    slots: dict[int, list[Slot]] = defaultdict(list)
    for name, dims in tr.param_dims.items():
        for d, dm in enumerate(dims):
            try:
                segs = spaces.resolve(dm)
            except Unresolvable:
                spaces.block(dm, f"layout of {name} dim {d} cannot be expressed")
                continue
            if len(segs) > 1 and any(s.outer > 1 for s in segs):
                spaces.block(dm, f"layout of {name} dim {d} cannot be expressed")
                continue
            role = tr.roles.get((name, d), "channel")
            offset = 0
            for s in segs:
                if s.space is not None:
                    stride = s.size * s.inner if s.outer > 1 else 0
                    slots[s.space].append(Slot(name, d, role, offset, s.inner, s.outer, stride))
                offset += s.length
    for g in tr.grouped:
        try:
            segs = spaces.resolve(g.source)
        except Unresolvable:
            segs = ()
        if len(segs) != 1 or not segs[0].plain or not g.tensor:
            spaces.block(g.source, f"input of grouped conv {module_of(g.tensor)} is not one channel range")
            continue
        slots[segs[0].space].append(Slot(g.tensor, 1, "in", row_groups=g.groups))

    counters: dict[int, list[Attr]] = defaultdict(list)
    for space, attr in tr.counters:
        try:  # a counted space may since be defined by another (a layer reading merged heads)
            segs = spaces.resolve((Seg(space, spaces.size[space]),))
        except Unresolvable:
            segs = ()
        roots = {seg.space for seg in segs}
        if len(roots) != 1 or None in roots:  # several spaces (or fixed runs) behind one count
            spaces.block_space(space, f"{attr.module}.{attr.name} counts its units, and cannot follow this layout")
            continue
        (root,) = roots  # q, k and v heads of one fused projection: each unit counts once per piece
        attr = replace(attr, per_unit=attr.per_unit * sum(seg.inner * seg.outer for seg in segs))
        if attr not in counters[root]:
            counters[root].append(attr)
    produced = set()
    for dm in tr.produced:
        produced |= spaces.atoms(dm)
    groups, skipped, used = [], {}, defaultdict(int)
    for root, group_slots in slots.items():
        producers = [s for s in group_slots if s.role == "out"]
        if not producers and spaces.find(root) not in produced:
            continue  # kernel sizes, vocabularies, stand-alone parameters: nothing to prune
        producers = producers or group_slots
        name = module_of(producers[0].tensor) or producers[0].tensor
        used[name] += 1
        if used[name] > 1:  # one layer's outputs split into several groups (a chunked conv, say)
            name = f"{name}#{used[name]}"
        root = spaces.find(root)
        parts = spaces.partitions.get(root, 1)
        if root in spaces.blocked:
            skipped[name] = spaces.blocked[root]
        elif spaces.size[root] // parts < 2:
            skipped[name] = "too few units to prune"
        else:
            groups.append(Group(name, root, spaces.size[root], _dedup(group_slots), parts, unit=producers[0].inner,
                                modules=sorted({module_of(s.tensor) for s in group_slots}),
                                attrs=counters.get(root, []), rescale=_dedup(tr.rescales.get(root, []))))
    return groups, skipped


def _dedup(slots: list[Slot]) -> list[Slot]:
    seen, out = set(), []
    for s in slots:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def make_plan(groups: list[Group], removals: dict[str, list[int]], tensors: dict[str, torch.Tensor],
              kind: str = "channels", meta: dict | None = None) -> Plan:
    """A plan holding only the groups that lose units, with the shapes their tensors had."""
    chosen = [g for g in groups if removals.get(g.name)]
    shapes = {s.tensor: list(tensors[s.tensor].shape) for g in chosen for s in [*g.slots, *g.rescale]}
    return Plan(kind=kind, shapes=shapes, meta=dict(meta or {}), groups=[
        GroupPlan(g.name, g.size, sorted(removals[g.name]), list(g.slots), g.unit, g.partitions, list(g.attrs),
                  list(g.rescale))
        for g in chosen])
