"""Depth surgery: residual blocks replaced by the identity (``y = x + f(x)`` becomes ``y = x``)."""
from __future__ import annotations

import torch.nn as nn

from edgeprune.plan import Plan, PlanError


def drop_blocks(model: nn.Module, plan: Plan) -> nn.Module:
    """Replace every module ``plan.blocks`` names by ``nn.Identity``, in place; return ``model``.

    Raises:
        PlanError: a named module is missing, is the model itself, or is already an identity;
            nothing is replaced then.
    """
    for parent, child in block_parents(model, plan):
        setattr(parent, child, nn.Identity())
    return model


def block_parents(model: nn.Module, plan: Plan) -> list[tuple[nn.Module, str]]:
    """``(parent module, attribute)`` of every block ``plan.blocks`` names; changes nothing.

    Raises:
        PlanError: as :func:`drop_blocks`.
    """
    parents = []
    for name in plan.blocks:
        parent_name, _, child = name.rpartition(".")
        if not child:
            raise PlanError("a plan cannot replace the whole model by the identity")
        try:
            parent = model.get_submodule(parent_name)
            block = parent.get_submodule(child)
        except AttributeError:
            raise PlanError(f"plan drops block {name!r}, which this model lacks (is it the same architecture?)") from None
        if isinstance(block, nn.Identity):
            raise PlanError(f"plan drops block {name!r}, which is already an identity (a plan applied twice?)")
        parents.append((parent, child))
    return parents
