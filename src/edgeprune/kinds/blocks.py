"""Blocks: whole residual blocks replaced by the identity, the least Block Influence first (depth).

Blocks are found in the forward pass (``edgeprune.graph.blocks``) and scored by Block Influence
(``edgeprune.criteria.block_influence``). The count comes from a ratio, ``n``, a MAC/parameter/byte
budget (the fewest blocks that meet it, priced on meta copies) or a latency budget (every
candidate depth measured on the budget's runtime, interleaved with the dense model).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch.nn as nn

from edgeprune.budget import Budget, BudgetError, price
from edgeprune.criteria.block_influence import block_influence
from edgeprune.errors import UnsupportedModelError
from edgeprune.graph.blocks import residual_blocks
from edgeprune.kinds.base import Resources
from edgeprune.plan import Plan
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan

DEFAULT_RATIO = 0.25


@dataclass(frozen=True)
class Blocks:
    """Depth pruning.

    Attributes:
        n: how many blocks to drop (instead of a ratio or a budget).
        calibration_batches: batches of ``data`` the blocks are scored on (without data, the example input).
    """

    n: int | None = None
    calibration_batches: int | None = 8

    @property
    def name(self) -> str:
        return "blocks"

    def propose(self, model: nn.Module, example_inputs: Any, ratio: float | None, budget: Budget | None,
                resources: Resources) -> Proposal:
        costed = budget is not None and (budget.has_cost or budget.sparsity is not None)
        if sum(v is not None for v in (ratio, self.n)) + costed > 1:
            raise ValueError("give exactly one of ratio= (a fraction of the residual blocks), n= (a count) or a cost budget=")
        if budget is not None and budget.sparsity is not None:
            raise BudgetError("depth pruning takes macs=, params=, bytes=, latency_ms= or speedup= budgets, not sparsity")
        if ratio is None and self.n is None and not costed:
            ratio = DEFAULT_RATIO
        blocks = residual_blocks(model, example_inputs)
        if not blocks:
            raise UnsupportedModelError("no residual block to drop: a block must return its input plus its branches "
                                        "(y = x + f(x)) with nothing after the add but a ReLU over an input that cannot be negative")
        if ratio is not None and not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {ratio}")
        data = resources.data
        inputs = [b[0] for b in islice(data, self.calibration_batches)] if data is not None else [example_inputs]
        influence = block_influence(model, blocks, inputs)
        ranked = sorted(blocks, key=lambda b: (influence[b], blocks.index(b)))  # least influence first

        def plan_of(count: int) -> Plan:
            return Plan(kind="blocks", blocks=[b for b in blocks if b in ranked[:count]],
                        meta={"criterion": "block-influence", "influence": {b: round(v, 6) for b, v in influence.items()}})

        count = int(ratio * len(blocks)) if ratio is not None else self.n
        measured: dict[int, float] = {}
        if costed and budget.has_latency:
            count, measured = _fewest_measured(model, example_inputs, plan_of, len(blocks), budget)
        elif costed:
            count = _fewest_meeting(model, example_inputs, budget, plan_of, len(blocks))
        if not 0 <= count < len(blocks):
            raise ValueError(f"n must be in [0, {len(blocks) - 1}] for this model's {len(blocks)} residual blocks, "
                             f"got {count}")
        plan = plan_of(count)
        stats = {"strategy": "blocks", "criterion": "block-influence", "blocks": len(blocks),
                 "dropped": len(plan.blocks), "influence": influence}
        if measured:
            stats["latency_ms"] = {f"{k} dropped": round(ms, 4) for k, ms in measured.items()}
        return Proposal(apply_plan(model, plan), [plan], {}, stats=stats)


def _fewest_measured(model: nn.Module, example_inputs: Any, plan_of, total: int,
                     budget: Budget) -> tuple[int, dict[int, float]]:
    """The fewest blocks whose removal meets a latency budget measured on its runtime, and every
    candidate's measured latency (``{blocks dropped: ms}``, 0 = the dense model)."""
    from edgeprune.targets.measured import measure_models

    if budget.has_cost and any(getattr(budget, n) is not None for n in ("macs", "params", "bytes")):
        raise BudgetError("give depth pruning one latency target alone, or MAC/parameter/byte targets")
    models = {"0": model}
    for count in range(1, total):
        models[str(count)] = apply_plan(model, plan_of(count))
    timed = measure_models(models, example_inputs, threads=budget.threads, rounds=8, runs=5, exporter="torchscript")
    measured = {int(k): m.ms for k, m in timed.items()}
    limit = budget.latency_limit(measured[0])
    meeting = [k for k in range(total) if measured[k] <= limit]
    if not meeting:
        raise BudgetError(f"the latency target ({limit:.4g} ms) cannot be met by dropping residual blocks: "
                          f"with {total - 1} of {total} dropped the model measures {measured[total - 1]:.4g} ms "
                          f"(dense {measured[0]:.4g} ms, {budget.runtime}, {budget.threads} threads)")
    return min(meeting), measured


def _fewest_meeting(model: nn.Module, example_inputs: Any, budget: Budget, plan_of, total: int) -> int:
    """The fewest blocks (least influence first) whose removal meets every target of ``budget``."""
    targets = budget.targets(model, example_inputs)
    reached: dict[str, float] = {}
    for count in range(total):
        reached = {t.name: price(t.cost_model, model, example_inputs, [plan_of(count)]) for t in targets}
        if all(t.met(reached[t.name]) for t in targets):
            return count
    raise BudgetError("the budget cannot be met by dropping residual blocks: with all but one dropped, "
                      + ", ".join(f"{t.name} {reached[t.name]:.4g} > {t.limit:.4g}" for t in targets
                                  if reached[t.name] > t.limit))
