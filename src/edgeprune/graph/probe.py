"""The shape probe: prove on a copy that every group can really shrink.

Tracing sees sizes as plain ints, so a forward that bakes a size in (``x.view(B, 512, 7, 7)``, an
``assert C == self.dim``, a module attribute used in a reshape) looks the same as one that reads
it from the tensor. The probe removes one unit from every candidate group of a copy of the model,
runs it under a light recorder and compares every op's output shape with the shape the groups
predict. The first op that disagrees (or raises) freezes the groups it touches, with a reason
that names the op and module; then the probe runs again until the copy agrees everywhere.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from edgeprune.graph.groups import Group, make_plan
from edgeprune.graph.spaces import DimMap, Unresolvable
from edgeprune.graph.trace import OpRecord, TraceResult, call_model, op_name, tensors_in
from edgeprune.surgery.structured import named_tensors, remove_units
from edgeprune.verify import _switch_holder, attention_variants


class _ShapeRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, list[tuple[int, ...]]]] = []
        self.failed_at: int | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            out = func(*args, **(kwargs or {}))
        except Exception:
            self.failed_at = len(self.shapes)
            raise
        outs = tensors_in(out)
        if outs:
            self.shapes.append((op_name(func), [tuple(t.shape) for t in outs]))
        return out


@dataclass
class ProbeOutcome:
    mismatch: int | None  # index of the first disagreeing op, None when all agree
    detail: str = ""
    outside_op: bool = False  # the copy failed outside any traced op (a Python assert, TorchScript)


def predicted_size(tr: TraceResult, dm: DimMap, removed: dict[int, int]) -> int:
    total = 0
    for seg in tr.spaces.resolve(dm):
        units = seg.size - removed.get(seg.space, 0) if seg.space is not None else seg.size
        if seg.space in tr.positions:  # the dims within a head cut per head: each head loses its share
            space, heads = tr.positions[seg.space]
            units = seg.size - removed.get(tr.spaces.find(space), 0) // heads
        total += units * seg.inner * seg.outer
    return total


def meta_copy(model: nn.Module, example_inputs: Any) -> tuple[nn.Module, Any]:
    """A copy of ``model`` and its inputs on the meta device: shapes only, no memory, no compute."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    inputs = tree_map(lambda x: torch.empty_like(x, device="meta") if isinstance(x, torch.Tensor) else x,
                      example_inputs)
    return copy.deepcopy(model, memo), inputs


def _copy(model: nn.Module, example_inputs: Any, meta: bool) -> tuple[nn.Module, Any]:
    """A copy of the model to cut: on the meta device when ``meta`` (cheap), else a real one."""
    return meta_copy(model, example_inputs) if meta else (copy.deepcopy(model), example_inputs)


def _record(model: nn.Module, inputs: Any) -> tuple[_ShapeRecorder, Exception | None]:
    recorder = _ShapeRecorder()
    model.eval()
    try:
        with torch.no_grad(), recorder:
            call_model(model, inputs)
    except Exception as exc:  # the pruned copy broke: the caller finds where
        return recorder, exc
    return recorder, None


def meta_agrees(model: nn.Module, example_inputs: Any, tr: TraceResult) -> bool:
    """Whether the model runs on the meta device exactly as it ran for the trace (then probes are cheap)."""
    try:
        meta_model, inputs = _copy(model, example_inputs, meta=True)
    except Exception:
        return False
    recorder, error = _record(meta_model, inputs)
    return error is None and [(n, s) for n, s in recorder.shapes] == [(r.name, r.out_shapes) for r in tr.records]


def run_probe(model: nn.Module, example_inputs: Any, tr: TraceResult, groups: list[Group],
              meta: bool = False, only: set[str] | None = None) -> ProbeOutcome:
    """Remove one unit per partition from each group of a copy and compare every op's shapes.

    Comparison stops at the first op whose output sizes depend on values (``nms``, ``nonzero``,
    boolean masks); after it, the copy must still run to the end. ``only``: remove units from
    these groups only (the others keep theirs), to catch sizes that hold only for even removals.
    """
    cut = [g for g in groups if only is None or g.name in only]
    removals = {g.name: [k * g.block_size + g.block_size - 1 for k in range(g.partitions)] for g in cut}
    removed = {g.root: g.partitions for g in cut}
    probe_model, inputs = _copy(model, example_inputs, meta)
    remove_units(probe_model, make_plan(groups, removals, named_tensors(probe_model)))
    recorder, error = _record(probe_model, inputs)
    for i, (name, shapes) in enumerate(recorder.shapes):
        if i >= len(tr.records) or tr.records[i].name != name:
            return ProbeOutcome(i, f"the pruned copy ran a different sequence of ops (at '{name}')")
        record = tr.records[i]
        try:
            expected = [tuple(predicted_size(tr, dm, removed) for dm in dims) for dims in record.outputs]
        except Unresolvable:
            return ProbeOutcome(i, "its output layout could not be predicted")
        if expected != shapes:
            if record.data_dependent:
                break  # sizes from here on follow the values (detection post-processing): only running counts
            return ProbeOutcome(i, f"output shape {shapes[0]} where {expected[0]} was expected")
    if error is not None:
        at = recorder.failed_at if recorder.failed_at is not None else len(recorder.shapes)
        return ProbeOutcome(min(at, len(tr.records) - 1), f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                            outside_op=recorder.failed_at is None)
    return ProbeOutcome(None)


def uneven_subsets(groups: list[Group]) -> list[set[str]]:
    """Subsets of groups such that any two groups are cut differently in at least one of them.

    The groups whose index has bit ``j`` set, and those where it is clear (a size may come out right
    when one side is cut and wrong when the other is): 2 ceil(log2 n) probes. The probe that
    cuts every group alike cannot see a size the forward derives from several groups' widths
    together (``x.split([C // 2, C // 2])`` with C read from the tensor, a chunk of a width shared
    by two groups); cutting one without the other shows it.
    """
    bits = (len(groups) - 1).bit_length()
    return [{g.name for i, g in enumerate(groups) if (i >> j & 1) == side} for j in range(bits) for side in (1, 0)]


def freeze_heads_at(tr: TraceResult, index: int, detail: str, groups: list[Group]) -> int:
    """Freeze only the head groups (groups with counting ``attrs``) that the op at ``index`` touches.

    Heads are the speculative units: a split of channels was read as heads, and the forward may
    size it some other way. Freezing them first keeps the ordinary groups that the same op touches
    (the residual width, a projection) prunable when the heads were the cause. Returns how many
    groups were frozen (0: none of the op's spaces is a head group).
    """
    record = tr.records[index]
    touched = set()
    for dims in record.inputs + record.outputs:
        for dm in dims:
            touched |= tr.spaces.atoms(dm)
    heads = [g for g in groups if g.attrs and tr.spaces.find(g.root) in touched]
    for g in heads:
        tr.spaces.block_space(g.root, f"the forward code does not follow a cut of its heads at op '{record.name}' in "
                                      f"{record.module or 'the top-level forward'} ({detail})")
    return len(heads)


def freeze_at(tr: TraceResult, index: int, detail: str, include_previous: bool) -> int:
    """Block every space the op at ``index`` touches; return how many roots were newly blocked."""
    records: list[OpRecord] = [tr.records[index]]
    if include_previous and index > 0:
        records.append(tr.records[index - 1])
    before = len(tr.spaces.blocked)
    for record in records:
        reason = (f"the forward code fixes a size at op '{record.name}' in "
                  f"{record.module or 'the top-level forward'} ({detail})")
        for dims in record.inputs + record.outputs:
            for dm in dims:
                tr.spaces.block(dm, reason)
    return len(tr.spaces.blocked) - before


def check_head_dims(model: nn.Module, example_inputs: Any, tr: TraceResult, groups: list[Group]) -> dict[str, str]:
    """Prove on a real copy that cutting within heads computes what the model computed.

    For every group cut within heads, the last unit of each head is made dead (the rows of its
    producers and their biases zeroed: q, k or v at that dim is 0, so it adds nothing to ``q . k``
    or to the output) and then removed; the outputs must not change. This is what the shapes cannot
    show: an attention scale computed from ``q.size(-1)`` in Python or from the ``head_dim``
    attribute the cut updates, a statistic over the head dim. A wrong scale may change the outputs
    only a little when the example's attention logits are small, so the copy runs in float64 with
    the groups' other producing rows multiplied by 4 (logits x16, a softmax far from uniform), and
    the outputs must agree to 1e-8 of their scale (float32 and 1e-4 where the model does not run in
    float64), under every attention implementation the model offers. Returns ``{module: reason}``
    for the modules whose cut changed the outputs (their heads are then cut whole).
    """
    fibre_module = {tr.spaces.find(f.total): f.module for f in tr.fibres}
    cut = [g for g in groups if tr.spaces.find(g.root) in fibre_module]
    if not cut:
        return {}
    if _dead_cut_agrees(model, example_inputs, cut):
        return {}
    out = {}
    for g in cut:  # find which (few forwards each; only for models that failed together)
        if not _dead_cut_agrees(model, example_inputs, [g]):
            out[fibre_module[tr.spaces.find(g.root)]] = (
                f"removing dims made dead in '{g.name}' changed the outputs (the forward computes something "
                f"from the head dim: an attention scale from q.size(-1) or from an attribute the cut updates, "
                f"a statistic over it)")
    return out or {fibre_module[tr.spaces.find(g.root)]: "removing dead head dims changed the outputs" for g in cut}


def _dead_cut_agrees(model: nn.Module, example_inputs: Any, groups: list[Group]) -> bool:
    try:
        return _dead_cut_agrees_in(model, example_inputs, groups, torch.float64, 1e-8)
    except _NoFloat64:
        return _dead_cut_agrees_in(model, example_inputs, groups, None, 1e-4)


class _NoFloat64(Exception):
    pass


def _dead_cut_agrees_in(model: nn.Module, example_inputs: Any, groups: list[Group], dtype, rtol: float) -> bool:
    dead = copy.deepcopy(model).eval()
    inputs = example_inputs
    if dtype is not None:
        dead = dead.to(dtype)
        inputs = tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
                          example_inputs)
        try:
            with torch.no_grad():
                call_model(dead, inputs)
        except Exception as exc:  # an op without a float64 kernel: check in float32
            raise _NoFloat64 from exc
    tensors = named_tensors(dead)
    removals = {g.name: [k * g.block_size + g.block_size - 1 for k in range(g.partitions)] for g in groups}
    with torch.no_grad():
        for g in groups:
            owners = {s.tensor.rpartition(".")[0] for s in g.slots if s.role == "out"}
            for s in g.slots:
                if s.role == "out" or (s.role == "channel" and s.tensor.rpartition(".")[0] in owners):
                    t = tensors[s.tensor]
                    t.mul_(4.0)  # the producers of the group's units (q and k rows, or v's): sharper attention
                    t.index_fill_(s.dim, torch.tensor(s.indices(removals[g.name])), 0.0)
        try:
            pruned = remove_units(copy.deepcopy(dead), make_plan(groups, removals, named_tensors(dead)))
        except Exception:
            return False
        # under every attention implementation the model offers (eager code may size its scale itself)
        for variant in attention_variants(dead) or [None]:
            if variant is not None:
                for m in (dead, pruned):
                    _switch_holder(m).set_attn_implementation(variant)
            reference = call_model(dead, inputs)
            try:
                result = call_model(pruned, inputs)
            except Exception:
                return False
            if not _agree(tensors_in(reference), tensors_in(result), rtol):
                return False
    return True


def _agree(ref: list[torch.Tensor], got: list[torch.Tensor], rtol: float) -> bool:
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        return False
    for a, b in zip(ref, got):
        if a.is_floating_point():
            scale = a.abs().max().clamp_min(1e-12)
            if not ((a - b).abs().max() / scale) <= rtol:
                return False
        elif not torch.equal(a, b):
            return False
    return True
