"""The Plan: the one exchange format between strategies, surgery, saving and remote workers.

A plan is plain data. It says which units of which groups are removed (structured pruning) and
which weights are masked (sparsity). It names tensors by their ``state_dict`` key and records the
shapes they had, so that applying it to a fresh copy of the same architecture gives the same
pruned model, and applying it to a different architecture fails with a clear error.

Structured layout, for one group::

    GroupPlan(name="layer1.0.conv1", size=64, partitions=1, remove=[3, 17],
              slots=[Slot("layer1.0.conv1.weight", dim=0, role="out"),
                     Slot("layer1.0.bn1.weight", dim=0, role="channel"), ...,
                     Slot("layer1.0.conv2.weight", dim=1, role="in")])

Unit ``c`` of a group covers, in each slot's tensor dimension, the indices
``offset + o * stride + c * inner + r`` for ``o < outer`` and ``r < inner``: ``inner`` > 1 where a
channel was flattened into features, ``offset`` where it arrived through a concatenation.
A slot with ``row_groups`` > 1 is the input dimension of a grouped convolution: the index is local
to each group of rows (see ``edgeprune.surgery``).

An attention-head group also lists the module attributes that count its units (``attrs``): a
forward that reshapes by ``self.num_heads`` or ``self.attn_dim`` runs only if they follow the cut::

    GroupPlan(name="blocks.0.attn.qkv", size=3, unit=64, remove=[1], slots=[...],
              attrs=[Attr("blocks.0.attn", "num_heads", per_unit=1),
                     Attr("blocks.0.attn", "attn_dim", per_unit=64)])
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeprune.errors import PlanError

PLAN_FORMAT = "edgeprune.plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class Slot:
    """Where a group's units live in one tensor dimension."""

    tensor: str
    dim: int
    role: str = "channel"  # "out" (produces the units), "in" (contracts them), "channel" (per-unit)
    offset: int = 0
    inner: int = 1
    outer: int = 1
    stride: int = 0  # distance between outer repeats; 0 when outer == 1
    row_groups: int = 1

    def indices(self, units: list[int]) -> list[int]:
        """The tensor indices along ``dim`` that ``units`` occupy (for ``row_groups`` == 1)."""
        out = []
        for o in range(self.outer):
            base = self.offset + o * self.stride
            for c in units:
                start = base + c * self.inner
                out.extend(range(start, start + self.inner))
        return out


@dataclass(frozen=True)
class Attr:
    """An integer attribute that counts a group's units: ``value == units * per_unit // divisor``.

    ``name`` may be dotted (``config.num_attention_heads``: an attribute of the module's config
    object). ``divisor`` counts per partition: grouped-query attention's ``num_key_value_groups``
    is the query heads per key/value head (``divisor`` = the key/value heads).
    """

    module: str
    name: str
    per_unit: int = 1
    divisor: int = 1


@dataclass
class GroupPlan:
    """The units removed from one group of coupled slots."""

    name: str
    size: int
    remove: list[int]
    slots: list[Slot]
    unit: int = 1
    partitions: int = 1
    attrs: list[Attr] = field(default_factory=list)
    # Rows whose kept entries are multiplied by (kept / size) ** 0.25 * c_h ** 0.5: the query and key
    # rows of an attention cut within heads whose scale follows the head dim (scaled_dot_product_attention
    # without scale=), so that the logits keep their spread (c_h, see
    # edgeprune.surgery.structured.rescale_factors) and stay exact when only dead dims go.
    rescale: list[Slot] = field(default_factory=list)

    def kept(self) -> list[int]:
        removed = set(self.remove)
        return [u for u in range(self.size) if u not in removed]


@dataclass
class MaskEntry:
    """A sparsity mask on one tensor: ``keep`` is the bit-packed (numpy.packbits, C order) keep mask, base64."""

    tensor: str
    shape: list[int]
    pattern: str  # "unstructured", or "N:M" such as "2:4"
    sparsity: float
    keep: str


@dataclass
class Plan:
    """What to prune: plain, JSON-serialisable, replayable on a fresh copy of the model."""

    kind: str = "channels"
    groups: list[GroupPlan] = field(default_factory=list)
    masks: list[MaskEntry] = field(default_factory=list)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # tensor -> shape before pruning
    meta: dict[str, Any] = field(default_factory=dict)  # criterion, strategy, ratio, notes
    blocks: list[str] = field(default_factory=list)  # residual blocks (module paths) replaced by identity

    @property
    def removed_units(self) -> int:
        return sum(len(g.remove) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, **asdict(self)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError("not an edgeprune plan (missing 'format': 'edgeprune.plan')")
        if data.get("version") != PLAN_VERSION:
            raise PlanError(f"plan version {str(data.get('version'))[:40]!r} is not supported (expected {PLAN_VERSION})")
        try:
            groups = [
                _typed(GroupPlan, {**_as(dict, g, "a group"), "slots": [_typed(Slot, s) for s in _as(list, g["slots"], "slots")],
                                   "attrs": [_typed(Attr, a) for a in _as(list, g.get("attrs", []), "attrs")],
                                   "rescale": [_typed(Slot, s) for s in _as(list, g.get("rescale", []), "rescale")]})
                for g in _as(list, data.get("groups", []), "groups")
            ]
            masks = [_typed(MaskEntry, m) for m in _as(list, data.get("masks", []), "masks")]
            shapes = _as(dict, data.get("shapes", {}), "shapes")
            for name, shape in shapes.items():
                _check_value(name, "shapes", "list[int]", shape)
            return cls(kind=_as(str, data["kind"], "kind"), groups=groups, masks=masks,
                       shapes={k: list(v) for k, v in shapes.items()},
                       meta=dict(_as(dict, data.get("meta", {}), "meta")),
                       blocks=[str(b) for b in _as(list, data.get("blocks", []), "blocks")])
        except (KeyError, TypeError) as exc:
            raise PlanError(f"malformed plan: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, an int of too many digits, deep nesting
            raise PlanError(f"plan is not valid JSON: {str(exc)[:200]}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan file; raises ``PlanError`` naming the file when it is missing or not a plan."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"cannot read plan {str(path)!r}: {exc}") from exc
        try:
            return cls.from_json(text)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from exc


_NONNEGATIVE = ("dim", "offset", "stride", "size")
_POSITIVE = ("inner", "outer", "row_groups", "unit", "partitions", "per_unit")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(name: str, where: str, kind: str, value: Any) -> None:
    ok = {"str": lambda v: isinstance(v, str), "int": _is_int,
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "list[int]": lambda v: isinstance(v, list) and all(_is_int(x) for x in v)}.get(kind, lambda v: True)
    if not ok(value):
        raise PlanError(f"malformed plan: {where} {name!r} is {str(value)[:60]!r}, expected {kind}")
    if kind == "int" and (name in _NONNEGATIVE and value < 0 or name in _POSITIVE and value < 1):
        raise PlanError(f"malformed plan: {where} {name!r} is {value}, out of range")


def _as(kind: type, value: Any, what: str) -> Any:
    if not isinstance(value, kind):
        raise PlanError(f"malformed plan: {what} is a {type(value).__name__}, expected a {kind.__name__}")
    return value


def _typed(cls: type, data: Any) -> Any:
    """``cls(**data)`` after checking each field's JSON type (and range) against its annotation."""
    data = _as(dict, data, f"a {cls.__name__}")
    for f in fields(cls):
        if f.name in data:
            _check_value(f.name, cls.__name__, str(f.type), data[f.name])
    return cls(**data)


_PLANS_ATTR = "_edgeprune_plans"


def attach_plan(model: Any, plan: Plan) -> None:
    """Record on ``model`` that ``plan`` was applied to it (a pruned model remembers its plans, in order)."""
    plans = list(getattr(model, _PLANS_ATTR, []))
    plans.append(plan)
    object.__setattr__(model, _PLANS_ATTR, plans)


def plans_of(model: Any) -> list[Plan]:
    """The plans applied to ``model``, oldest first; empty for a model edgeprune never pruned."""
    return list(getattr(model, _PLANS_ATTR, []))
