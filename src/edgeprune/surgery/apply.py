"""The one plan applier: every kind of plan (units, heads, blocks, masks) goes through :func:`apply_plan`.

Strategies, pricing, saving, loading and remote workers all replay plans here, so a plan means the
same thing wherever it is applied. A plan names the tensors it changes and the shapes they had, so
applying it to another architecture (or twice) fails with a ``PlanError`` before anything changes.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch.nn as nn

from edgeprune.plan import Plan, PlanError, attach_plan
from edgeprune.surgery.blocks import block_parents, drop_blocks
from edgeprune.surgery.structured import remove_units

PlanLike = Plan | str | Mapping[str, Any]


def as_plan(plan: PlanLike) -> Plan:
    """A ``Plan`` from a plan, its JSON text or its dict."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, str):
        return Plan.from_json(plan)
    if isinstance(plan, Mapping):
        return Plan.from_dict(dict(plan))
    raise PlanError(f"expected a Plan, its JSON text or its dict, got {type(plan).__name__}")


def apply_plan(model: nn.Module, plans: PlanLike | Iterable[PlanLike], *, inplace: bool = False) -> nn.Module:
    """Apply one plan, or several in order, to a model of the architecture they were made for.

    Args:
        model: the unpruned model (or one pruned by exactly the plans before these).
        plans: a ``Plan`` (or its JSON text or dict), or a list of them, oldest first. Each may remove
            units (channels, neurons, heads), drop residual blocks, or mask weights.
        inplace: change ``model`` itself; otherwise a copy is pruned and ``model`` is untouched.

    Returns:
        The pruned model (``model`` itself when ``inplace``). It remembers its plans
        (``edgeprune.plan.plans_of``), which is what ``edgeprune.save`` records.

    Raises:
        PlanError: a plan does not fit; with ``inplace=False`` the caller's model is unchanged.

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> r = edgeprune.prune(m, torch.randn(1, 4), ratio=0.5)
        >>> edgeprune.apply_plan(m, r.plans)[0].out_features
        4
    """
    chosen = [as_plan(plans)] if isinstance(plans, (Plan, str, Mapping)) else [as_plan(p) for p in plans]
    target = model if inplace else copy.deepcopy(model)
    for plan in chosen:
        _apply_one(target, plan)
    return target


def _apply_one(model: nn.Module, plan: Plan) -> None:
    if plan.blocks and plan.masks:
        raise PlanError("a plan either drops blocks or masks weights, not both (apply them as two plans)")
    if plan.blocks:  # the names are checked before any unit is removed, so a bad plan changes nothing
        block_parents(model, plan)
    if plan.groups:
        remove_units(model, plan)  # checks every tensor before it changes any
    if plan.blocks:  # depth beside width: the units first (the plan's tensors name the unpruned model),
        drop_blocks(model, plan)  # then the blocks (a residual block keeps its input's width)
    if plan.masks:
        from edgeprune.surgery.masks import apply_masks  # parametrizations: loaded only for sparse plans

        apply_masks(model, plan)
    attach_plan(model, plan)
