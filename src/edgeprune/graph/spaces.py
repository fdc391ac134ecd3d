"""Index spaces: which tensor dimensions must be pruned together, and how their indices line up.

Every dimension of every tensor seen during tracing is labelled by a ``DimMap``: a concatenation of
segments, each either a *fixed* run of indices (never pruned) or a run that follows a *space* of
units. Tracing unifies dimensions that must stay equal (a residual add, a conv's input with its
weight's input dimension), so at the end each surviving root space is one prunable group.

A segment ``Seg(space, size, inner, outer)`` covers ``size * inner * outer`` indices; unit ``c`` of
the space occupies indices ``o * size * inner + c * inner + r`` (``r < inner``, ``o < outer``).
``inner`` appears when a channel is flattened together with the spatial dimensions after it,
``outer`` when it is flattened together with dimensions before it (channels-last).

A root space may be *derived*: defined as a DimMap over other spaces (a conv consuming a
concatenation, a Linear consuming a flattened feature map, a chunk of a channel range). Blocking a
space marks it unprunable with a reason; the reason is what the user reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd


@dataclass(frozen=True)
class Seg:
    """A run of indices in one tensor dimension; ``space`` is None for a fixed run."""

    space: int | None
    size: int
    inner: int = 1
    outer: int = 1

    @property
    def length(self) -> int:
        return self.size * self.inner * self.outer

    @property
    def plain(self) -> bool:
        return self.space is not None and self.inner == 1 and self.outer == 1


DimMap = tuple[Seg, ...]


def fixed(n: int) -> DimMap:
    """A dimension of ``n`` indices that no pruning may touch."""
    return (Seg(None, n),)


def length(dm: DimMap) -> int:
    return sum(s.length for s in dm)


class Unresolvable(Exception):
    """An index layout that segments cannot express (the caller blocks the spaces involved)."""


class SpaceTable:
    """Union-find over index spaces, with derived spaces, partitions and block reasons."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self.size: list[int] = []
        self.label: list[str] = []
        self.derived: dict[int, DimMap] = {}
        self.blocked: dict[int, str] = {}
        self.partitions: dict[int, int] = {}

    # -- creation and lookup -------------------------------------------------------------------
    def new(self, size: int, label: str) -> int:
        self._parent.append(len(self._parent))
        self.size.append(size)
        self.label.append(label)
        return len(self._parent) - 1

    def new_map(self, size: int, label: str) -> DimMap:
        return (Seg(self.new(size, label), size),)

    def find(self, s: int) -> int:
        root = s
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[s] != root:  # path compression
            self._parent[s], s = root, self._parent[s]
        return root

    def is_blocked(self, s: int) -> bool:
        return self.find(s) in self.blocked

    # -- resolution -----------------------------------------------------------------------------
    def resolve(self, dm: DimMap, _depth: int = 0) -> DimMap:
        """Rewrite ``dm`` over atomic (non-derived) root spaces; raise Unresolvable if it can't be."""
        if _depth > 64:
            raise Unresolvable("derivation too deep")
        out: list[Seg] = []
        for seg in dm:
            if seg.space is None:
                out.append(Seg(None, seg.length))
                continue
            root = self.find(seg.space)
            if root not in self.derived:
                out.append(Seg(root, seg.size, seg.inner, seg.outer))
                continue
            out.extend(_compose(seg, self.resolve(self.derived[root], _depth + 1)))
        return _merge_fixed(out)

    def atoms(self, dm: DimMap, _seen: set[int] | None = None) -> set[int]:
        """All atomic root spaces that ``dm`` depends on, without composing layouts."""
        seen = set() if _seen is None else _seen
        found: set[int] = set()
        for seg in dm:
            if seg.space is None:
                continue
            root = self.find(seg.space)
            if root in seen:
                continue
            seen.add(root)
            if root in self.derived:
                found |= self.atoms(self.derived[root], seen)
            else:
                found.add(root)
        return found

    def spread(self, dm: DimMap, inner: int = 1, outer: int = 1) -> DimMap:
        """The label of ``dm`` flattened with ``inner`` elements after it and ``outer`` before it."""
        resolved = self.resolve(dm)
        if all(s.space is None for s in resolved):
            return fixed(length(resolved) * inner * outer)
        carrier = Seg(-1, length(resolved), inner, outer)  # stands in for a space defined by `resolved`
        return _merge_fixed(_compose(carrier, resolved))

    # -- constraints ----------------------------------------------------------------------------
    def block(self, dm: DimMap, reason: str) -> None:
        for root in self.atoms(dm):
            self.blocked.setdefault(root, reason)

    def block_space(self, s: int, reason: str) -> None:
        self.block((Seg(s, self.size[s]),), reason)

    def set_partitions(self, dm: DimMap, parts: int, reason: str) -> None:
        """Units of ``dm`` must be removed in equal numbers from ``parts`` contiguous blocks."""
        if parts <= 1:
            return
        try:
            resolved = self.resolve(dm)
        except Unresolvable:
            self.block(dm, reason)
            return
        if len(resolved) != 1 or not resolved[0].plain or resolved[0].size % parts:
            self.block(dm, reason)
            return
        root = resolved[0].space
        current = self.partitions.get(root, 1)
        self.partitions[root] = current * parts // gcd(current, parts)

    # -- unification ----------------------------------------------------------------------------
    def unify(self, a: DimMap, b: DimMap, reason: str) -> None:
        """Make two dimension labels describe the same indices; block what can't be matched."""
        if length(a) != length(b):
            self.block(a, reason)
            self.block(b, reason)
            return
        for _ in range(256):
            try:
                left, right = self.resolve(a), self.resolve(b)
            except Unresolvable:
                break
            cuts = _boundaries(left) | _boundaries(right)
            inside = _first_cut_inside(left, cuts) or _first_cut_inside(right, cuts)
            if inside is None:
                for x, y in zip(_cut_fixed(left, cuts), _cut_fixed(right, cuts)):
                    self._unify_segs(x, y, reason)
                return
            seg, at = inside
            if not seg.plain:
                break
            self._split(seg, at, reason)  # the split changes how both sides resolve: go again
        self.block(a, reason)
        self.block(b, reason)

    def _split(self, seg: Seg, at: int, reason: str) -> list[Seg] | None:
        if seg.space is None:
            return [Seg(None, at), Seg(None, seg.length - at)]
        if not seg.plain:
            return None
        first = self.new(at, self.label[seg.space] + f"[:{at}]")
        second = self.new(seg.size - at, self.label[seg.space] + f"[{at}:]")
        pieces = (Seg(first, at), Seg(second, seg.size - at))
        self._derive(seg.space, pieces, reason)
        return list(pieces)

    def coarsen(self, space: int, size: int, inner: int, outer: int, reason: str) -> int:
        """Regroup an atomic root space into ``size`` coarser units; return the new space.

        Unit ``c`` of the new space covers old units ``o * size * inner + c * inner + r`` (an attention
        head: ``inner`` = head_dim, ``outer`` = 3 for a fused q/k/v projection). Pruning then removes
        whole new units only.
        """
        new = self.new(size, f"{self.label[space]}/{size}")
        self._derive(space, (Seg(new, size, inner, outer),), reason)
        return new

    def slice(self, dm: DimMap, start: int, stop: int, reason: str) -> DimMap:
        """The label of indices ``start:stop`` of a dimension labelled ``dm``."""
        try:
            segs = list(self.resolve(dm))
        except Unresolvable:
            self.block(dm, reason)
            return fixed(stop - start)
        out: list[Seg] = []
        pos = 0
        for seg in segs:
            lo, hi = pos, pos + seg.length
            pos = hi
            if hi <= start or lo >= stop:
                continue
            if start <= lo and hi <= stop:
                out.append(seg)
                continue
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            if seg.space is None:
                out.append(Seg(None, b - a))
                continue
            if not seg.plain:
                self.block((seg,), reason)
                out.append(Seg(None, b - a))
                continue
            cuts = [c for c in (a, b) if 0 < c < seg.size]
            pieces, prev = [], 0
            for c in cuts + [seg.size]:
                pieces.append(Seg(self.new(c - prev, self.label[seg.space] + f"[{prev}:{c}]"), c - prev))
                prev = c
            self._derive(seg.space, tuple(pieces), reason)
            off = 0
            for p in pieces:
                if a <= off and off + p.size <= b:
                    out.append(p)
                off += p.size
        return _merge_fixed(out)

    def _unify_segs(self, x: Seg, y: Seg, reason: str) -> None:
        if x.space is None and y.space is None:
            return
        if x.space is None or y.space is None:
            self.block((x if x.space is not None else y,), reason)
            return
        rx, ry = self.find(x.space), self.find(y.space)
        if (x.inner, x.outer) == (y.inner, y.outer):
            if rx != ry:
                self._union(rx, ry)
            return
        if rx == ry:
            self.block((x,), reason)
        elif x.plain:
            self._derive(rx, (Seg(ry, y.size, y.inner, y.outer),), reason)
        elif y.plain:
            self._derive(ry, (Seg(rx, x.size, x.inner, x.outer),), reason)
        else:
            self.block((x,), reason)
            self.block((y,), reason)

    def _union(self, a: int, b: int) -> None:
        if self.size[a] != self.size[b]:  # cannot happen for equal-length plain segments
            raise AssertionError("union of spaces of different sizes")
        self._parent[b] = a
        if b in self.blocked:
            self.blocked.setdefault(a, self.blocked.pop(b))
        if b in self.partitions:
            pa, pb = self.partitions.get(a, 1), self.partitions.pop(b)
            self.partitions[a] = pa * pb // gcd(pa, pb)

    def _derive(self, root: int, definition: DimMap, reason: str) -> None:
        root = self.find(root)
        if root in self.atoms(definition):
            self.block(definition, reason)
            return
        self.derived[root] = definition
        if root in self.blocked:
            self.block(definition, self.blocked[root])
        if self.partitions.get(root, 1) > 1:
            self.set_partitions(definition, self.partitions.pop(root), reason)


def _compose(seg: Seg, sub: DimMap) -> list[Seg]:
    """Lay ``seg``'s inner/outer repetition over the segments that define its space."""
    i1, o1 = seg.inner, seg.outer
    if i1 == 1 and o1 == 1:
        return list(sub)
    if len(sub) == 1:
        s = sub[0]
        if s.space is None:
            return [Seg(None, seg.length)]
        if s.outer == 1:
            return [Seg(s.space, s.size, s.inner * i1, o1)]
        if i1 == 1:
            return [Seg(s.space, s.size, s.inner, s.outer * o1)]
        raise Unresolvable("interleaved layout")
    if o1 == 1:
        return [Seg(None, s.length * i1) if s.space is None else Seg(s.space, s.size, s.inner * i1, s.outer)
                for s in sub]
    raise Unresolvable("concatenation repeated under an outer dimension")


def _boundaries(segs: DimMap) -> set[int]:
    cuts, pos = {0}, 0
    for s in segs:
        pos += s.length
        cuts.add(pos)
    return cuts


def _first_cut_inside(segs: DimMap, cuts: set[int]) -> tuple[Seg, int] | None:
    """The first tracked segment that a cut falls strictly inside, and the cut's offset in it."""
    pos = 0
    for s in segs:
        if s.space is not None:
            inside = [c - pos for c in cuts if pos < c < pos + s.length]
            if inside:
                return s, min(inside)
        pos += s.length
    return None


def _cut_fixed(segs: DimMap, cuts: set[int]) -> list[Seg]:
    out, pos = [], 0
    for s in segs:
        if s.space is None:
            inner = sorted(c for c in cuts if pos < c < pos + s.length) + [pos + s.length]
            prev = pos
            for c in inner:
                out.append(Seg(None, c - prev))
                prev = c
        else:
            out.append(s)
        pos += s.length
    return out


def _merge_fixed(segs: list[Seg]) -> DimMap:
    out: list[Seg] = []
    for s in segs:
        if s.length == 0:
            continue
        if s.space is None and out and out[-1].space is None:
            out[-1] = Seg(None, out[-1].size + s.size)
        else:
            out.append(s)
    return tuple(out)

