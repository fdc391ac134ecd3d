"""Cost models: how a model (or a plan, before it is applied) is priced.

MACs, parameters and bytes are priced on a *meta-device* copy of the model with the plan applied:
the copy holds shapes and no data, so pricing a plan costs one shape-only forward pass and no
memory. A latency target is priced by a latency predictor (``edgeprune.targets``) that implements
the same :class:`CostModel` protocol.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn

from edgeprune.graph.probe import meta_copy
from edgeprune.plan import Plan
from edgeprune.surgery import apply_plan


@runtime_checkable
class CostModel(Protocol):
    """Prices a model: ``cost(model, example_inputs) -> float`` (lower is cheaper).

    ``on_meta`` says whether the model may be a meta-device copy (shapes only, no data). A
    latency predictor that reads channel counts can be priced on meta; one that runs the model
    on a runtime sets ``on_meta = False`` and gets a real copy.
    """

    name: str
    on_meta: bool

    def cost(self, model: nn.Module, example_inputs: Any) -> float: ...


@dataclass(frozen=True)
class MacsCost:
    """MACs of one forward pass (``edgeprune.measure.count_macs``)."""

    name: str = "macs"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        from edgeprune.measure.macs import count_macs

        return float(count_macs(model, example_inputs).total)


@dataclass(frozen=True)
class ParamsCost:
    """Parameter values (dense; a tensor tied in two places counts once)."""

    name: str = "params"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        return float(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class BytesCost:
    """Bytes of the state dict (parameters and buffers at their dtypes): the size of the saved weights."""

    name: str = "bytes"
    on_meta: bool = True

    def cost(self, model: nn.Module, example_inputs: Any) -> float:
        seen = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
        return float(sum(t.numel() * t.element_size() for t in seen.values()))


@dataclass(frozen=True)
class Target:
    """One resolved budget target: ``cost_model`` must price the pruned model at or below ``limit``."""

    name: str
    cost_model: CostModel
    limit: float
    original: float

    def met(self, value: float) -> bool:
        return value <= self.limit


def price(cost_model: CostModel, model: nn.Module, example_inputs: Any, plans: Sequence[Plan]) -> float:
    """The cost of ``model`` after ``plans`` are applied (to a copy; ``model`` is not changed).

    Uses a meta-device copy when the cost model allows it and the model runs on meta.
    """
    copy_, inputs = None, example_inputs
    if cost_model.on_meta:
        try:
            copy_, inputs = meta_copy(model, example_inputs)
            for plan in plans:
                apply_plan(copy_, plan, inplace=True)
            with torch.no_grad():
                return float(cost_model.cost(copy_.eval(), inputs))
        except (RuntimeError, NotImplementedError, TypeError):
            copy_, inputs = None, example_inputs  # an op without a meta kernel: price a real copy
    copy_ = copy.deepcopy(model)
    for plan in plans:
        apply_plan(copy_, plan, inplace=True)
    with torch.no_grad():
        return float(cost_model.cost(copy_.eval(), inputs))


def plan_cost(targets: Sequence[Target], model: nn.Module, example_inputs: Any,
              plans: Sequence[Plan]) -> dict[str, float]:
    """``{target name: cost}`` of ``model`` after ``plans``, for every target.

    Example:
        >>> from edgeprune.budget import Budget
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> t = Budget(params=0.5).targets(m, torch.randn(1, 8))
        >>> plan_cost(t, m, torch.randn(1, 8), [])
        {'params': 178.0}
    """
    return {t.name: price(t.cost_model, model, example_inputs, plans) for t in targets}


