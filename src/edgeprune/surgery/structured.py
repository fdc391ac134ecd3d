"""Structured surgery: slice tensors as a plan says and update the modules that own them.

All new tensors are computed before any module is touched, so a plan that does not fit raises
before the model changes.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import torch
import torch.nn as nn

from edgeprune.plan import GroupPlan, Plan, PlanError
from edgeprune.surgery.modules import update_module_attributes


def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by its state_dict name, aliases (tied weights) included."""
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update((n, b) for n, b in model.named_buffers(remove_duplicate=False) if b is not None)
    return out


def remove_units(model: nn.Module, plan: Plan) -> nn.Module:
    """Remove the units a structured plan names from ``model``, in place, and return it.

    Use :func:`edgeprune.surgery.apply_plan`, which also drops blocks, masks weights and records the
    plan; this is its structured step.

    Raises:
        PlanError: a tensor is missing, has another shape than the plan recorded, or the plan's
            indices are out of range or unbalanced across groups of a grouped layer.
    """
    tensors = named_tensors(model)
    _check_shapes(plan, tensors)
    removal: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    grouped: dict[str, tuple[int, list[int]]] = {}
    rescale: dict[str, list[tuple[int, list[int], float]]] = defaultdict(list)
    for group in plan.groups:
        _check_group(group)
        for slot in group.slots:
            if slot.tensor not in tensors:
                raise PlanError(f"plan group {group.name!r} names tensor {slot.tensor!r}, which this model lacks")
            if slot.row_groups > 1:
                grouped[slot.tensor] = (slot.row_groups, list(group.remove))
                continue
            t = tensors[slot.tensor]
            if not 0 <= slot.dim < t.dim():
                raise PlanError(f"plan group {group.name!r} slices dim {slot.dim} of {slot.tensor}, "
                                f"which has {t.dim()} dims")
            extent = t.shape[slot.dim]
            # Checked by arithmetic before any index list is built: a hostile inner/outer would make one enormous.
            spans = slot.outer * group.size * slot.inner
            top = slot.offset + (slot.outer - 1) * slot.stride + (max(group.remove, default=0) + 1) * slot.inner
            if group.remove and (spans > extent or top > extent):
                raise PlanError(f"plan group {group.name!r} removes index {top - 1} of "
                                f"{slot.tensor} dim {slot.dim}, which has only {extent}")
            removal[slot.tensor][slot.dim].update(slot.indices(group.remove))
        if group.rescale:
            for slot in group.rescale:
                _check_rescale(group, slot, tensors)
            factors = rescale_factors(group, tensors)
            kept = group.kept()
            for slot in group.rescale:
                per_index = factors[kept].repeat_interleave(slot.inner).repeat(slot.outer)  # slot.indices' order
                rescale[slot.tensor].append((slot.dim, slot.indices(kept), per_index))

    new: dict[str, torch.Tensor] = {}
    for name in set(removal) | set(grouped) | set(rescale):
        t = tensors[name].detach()
        for dim, idx, factor in rescale.get(name, []):  # on the original indices, before any slicing
            rows = torch.tensor(idx, dtype=torch.long, device=t.device)
            shape = [-1 if d == dim else 1 for d in range(t.dim())]
            t = t.index_copy(dim, rows, t.index_select(dim, rows) * factor.to(t).view(shape))
        if name in grouped:
            t = _gather_grouped_inputs(t, *grouped[name], name)
        for dim, idx in sorted(removal.get(name, {}).items()):
            keep = torch.tensor([i for i in range(t.shape[dim]) if i not in idx], dtype=torch.long)
            t = t.index_select(dim, keep)
        new[name] = t.contiguous()
    counts = _counting_attributes(model, plan)
    _swap_tensors(model, tensors, new)
    for owner, name, value in counts:
        setattr(owner, name, value)
    return model


def _check_shapes(plan: Plan, tensors: dict[str, torch.Tensor]) -> None:
    for name, shape in plan.shapes.items():
        if name not in tensors:
            raise PlanError(f"plan was made for a model with tensor {name!r}, which this model lacks "
                            f"(is it the same architecture?)")
        if list(tensors[name].shape) != list(shape):
            raise PlanError(f"tensor {name!r} has shape {list(tensors[name].shape)}, the plan expects {list(shape)} "
                            f"(a different architecture, or a model already pruned)")


def _counting_attributes(model: nn.Module, plan: Plan) -> list[tuple[Any, str, int]]:
    """The new value of every attribute that counts a group's units (``num_heads``), checked first.

    An attribute may live on an object several groups share (a Hugging Face config holds the head
    count of every layer): it follows the cut when all of them keep the same count, and stays as
    it was, with a warning, when they differ (one number cannot describe them).
    """
    out: dict[tuple[int, str], tuple[Any, str, int]] = {}
    conflicts: set[tuple[int, str]] = set()
    for group in plan.groups:
        for attr in group.attrs:
            try:
                module = model.get_submodule(attr.module)
            except AttributeError:
                raise PlanError(f"plan group {group.name!r} updates {attr.module}.{attr.name}, "
                                f"but this model has no module {attr.module!r}") from None
            *path, leaf = attr.name.split(".")
            owner = module
            for part in path:
                owner = getattr(owner, part, None)
            before = getattr(owner, leaf, None)
            if before != group.size * attr.per_unit // attr.divisor:
                raise PlanError(f"plan group {group.name!r} expects {attr.module or 'the model'}.{attr.name} == "
                                f"{group.size * attr.per_unit // attr.divisor}, found {before!r}")
            value = (group.size - len(group.remove)) * attr.per_unit // attr.divisor
            key = (id(owner), leaf)
            if key in out and out[key][2] != value:
                conflicts.add(key)
            out[key] = (owner, leaf, value)
    for key in conflicts:
        owner, leaf, _ = out.pop(key)
        warnings.warn(f"{type(owner).__name__}.{leaf} is shared by groups that keep different counts: "
                      f"left at {getattr(owner, leaf)}", stacklevel=3)
    return list(out.values())


def rescale_factors(group: GroupPlan, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The factor each unit's q and k rows are multiplied by when ``group`` is cut within heads
    (shape ``[group.size]``; only the kept units' entries are used).

    The fused attention's default scale becomes ``1 / sqrt(d')``. The factor ``(d' / d) ** 0.25 *
    c_h ** 0.5`` on both q and k makes the logits ``c_h * (q . k over the kept dims) / sqrt(d)``, where
    ``c_h = sqrt(sum of a over head h's dims / sum over its kept dims)`` and ``a = |q row|^2 |k row|^2``
    (the weights' squared norms): the spread of the logits, estimated from the weights, stays what it was.
    Dims with a zero q or k row have ``a = 0``, so removing only such (dead) dims gives ``c_h = 1`` and
    the original logits exactly; removing live dims of equal norms gives ``c_h = sqrt(d / d')``, i.e.
    SDPA's default scale of the cut dim. Without a q and a k side to read (or with only dead dims
    kept) ``c_h`` is 1.
    """
    size, kept = group.size, group.kept()
    base = torch.full((size,), (len(kept) / size) ** 0.25, dtype=torch.float64)
    sides: dict[tuple[str, int], torch.Tensor] = {}  # (projection, offset) -> squared row norm per unit
    for slot in group.rescale:
        if slot.tensor.rpartition(".")[2] == "bias":
            continue
        t = tensors[slot.tensor].detach()
        if t.is_meta:  # a plan priced on the meta device: no values, and none needed
            return base
        t = t.double()
        per_row = t.movedim(slot.dim, 0).reshape(t.shape[slot.dim], -1).pow(2).sum(1)
        rows = torch.tensor(slot.indices(list(range(size))), dtype=torch.long, device=t.device).view(slot.outer, size, slot.inner)
        key = (slot.tensor.rpartition(".")[0], slot.offset)
        sides[key] = sides.get(key, 0) + per_row[rows].sum((0, 2)).cpu()
    if len(sides) != 2:
        return base
    a = torch.stack(list(sides.values())).prod(0).view(group.partitions, -1)  # (heads, head_dim)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[kept] = True
    total, left = a.sum(1), (a * mask.view_as(a)).sum(1)
    c = torch.where(left > 0, total / left.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(total)).sqrt()
    return base * c.repeat_interleave(size // group.partitions).sqrt()


def _check_rescale(group: GroupPlan, slot, tensors: dict[str, torch.Tensor]) -> None:
    if slot.tensor not in tensors:
        raise PlanError(f"plan group {group.name!r} rescales tensor {slot.tensor!r}, which this model lacks")
    t = tensors[slot.tensor]
    if not 0 <= slot.dim < t.dim() or slot.row_groups != 1 or \
            slot.offset + (slot.outer - 1) * slot.stride + group.size * slot.inner > t.shape[slot.dim]:
        raise PlanError(f"plan group {group.name!r} rescales rows of {slot.tensor} dim {slot.dim} "
                        f"that its shape {list(t.shape)} does not have")


def _check_group(group: GroupPlan) -> None:
    if len(set(group.remove)) != len(group.remove):
        raise PlanError(f"plan group {group.name!r} removes a unit twice")
    if any(not 0 <= u < group.size for u in group.remove):
        raise PlanError(f"plan group {group.name!r} removes a unit outside 0..{group.size - 1}")
    if len(group.remove) >= group.size:
        raise PlanError(f"plan group {group.name!r} removes all {group.size} units")
    if group.partitions > 1:
        block = group.size // group.partitions
        counts = [sum(1 for u in group.remove if u // block == k) for k in range(group.partitions)]
        if len(set(counts)) > 1 or counts[0] >= block:
            raise PlanError(f"plan group {group.name!r} must remove equal numbers from each of its "
                            f"{group.partitions} blocks, and keep at least one in each (got {counts})")


def _gather_grouped_inputs(w: torch.Tensor, groups: int, remove: list[int], name: str) -> torch.Tensor:
    """Drop input channels of a grouped conv weight ``(out, in/groups, *k)``, group by group."""
    per_group_in = w.shape[1]
    rows_per_group = w.shape[0] // groups
    removed = set(remove)
    parts = []
    for k in range(groups):
        keep = [j for j in range(per_group_in) if k * per_group_in + j not in removed]
        if k and len(keep) != parts[0].shape[1]:
            raise PlanError(f"grouped weight {name!r}: groups lose different numbers of input channels")
        rows = w[k * rows_per_group:(k + 1) * rows_per_group]
        parts.append(rows.index_select(1, torch.tensor(keep, dtype=torch.long)))
    return torch.cat(parts, 0)


def _swap_tensors(model: nn.Module, old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
    """Put new tensors in place of old ones, once per tensor object (tied weights stay tied)."""
    by_identity: dict[int, torch.Tensor | nn.Parameter] = {}
    for name, t in new.items():
        original = old[name]
        by_identity[id(original)] = (nn.Parameter(t, requires_grad=original.requires_grad)
                                     if isinstance(original, nn.Parameter) else t)
    touched: dict[str, nn.Module] = {}
    for name, original in old.items():
        replacement = by_identity.get(id(original))
        if replacement is None:
            continue
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        setattr(module, attr, replacement)  # nn.Module registers it as the parameter/buffer it replaces
        touched[module_name] = module
    for module in touched.values():
        update_module_attributes(module)
