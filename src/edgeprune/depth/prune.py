"""Depth pruning: drop the residual blocks that change their input least."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch.nn as nn

from edgeprune.budget import Budget, BudgetError, MacsCost, ParamsCost, price
from edgeprune.depth.find import residual_blocks
from edgeprune.depth.influence import block_influence
from edgeprune.errors import UnsupportedModelError
from edgeprune.plan import Plan
from edgeprune.result import PruneResult
from edgeprune.surgery import apply_plan


def prune_blocks(model: nn.Module, example_inputs: Any, ratio: float | None = None, *, n: int | None = None,
                 budget: Budget | None = None, speedup: float | None = None, latency_ms: float | None = None,
                 threads: int = 2, data: Iterable | None = None, batches: int | None = 8,
                 inplace: bool = False) -> PruneResult:
    """Replace the residual blocks with the least Block Influence by the identity.

    Args:
        model: a trained model with residual blocks (``y = x + f(x)``; see ``edgeprune.depth.find``).
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        ratio: fraction of the residual blocks to drop (rounded down); or give ``n`` or ``budget``.
        n: how many blocks to drop.
        budget: ``Budget(macs=..., params=..., bytes=...)``: drop the fewest blocks, least influence
            first, that meet every target.
        speedup, latency_ms: a latency target *measured* on ONNX Runtime (CPU, ``threads``): the
            dense model and every candidate depth are exported and timed in interleaved rounds
            (``edgeprune.targets.measured``), and the fewest blocks that meet it are dropped.
        data: batches of ``(inputs, targets)`` to score the blocks on (``batches`` of them);
            without it, the example input.
        inplace: prune ``model`` itself instead of a copy.

    Returns:
        A :class:`PruneResult` whose plan (kind ``"blocks"``) lists the dropped blocks and whose
        ``stats`` hold every block's influence and the MACs and parameters before and after.

    Raises:
        UnsupportedModelError: the model has no residual block that can be dropped.
        ValueError: not exactly one of ``ratio``, ``n``, ``budget`` and a latency target, or a
            count out of range.
        BudgetError: the budget or latency target is not met with all but one block dropped.

    Example:
        >>> from edgeprune.tasks import get_task
        >>> task = get_task("mnist-vit")
        >>> r = prune_blocks(task.build(seed=0), task.example_input(), n=1)
        >>> len(r.plan.blocks), len(r.stats["influence"])
        (1, 4)
    """
    latency = speedup is not None or latency_ms is not None
    if sum(v is not None for v in (ratio, n, budget)) + latency != 1 or (speedup is not None and latency_ms is not None):
        raise ValueError("give exactly one of ratio= (a fraction of the residual blocks), n= (a count), budget= "
                         "or one latency target (speedup= or latency_ms=)")
    blocks = residual_blocks(model, example_inputs)
    if not blocks:
        raise UnsupportedModelError("no residual block to drop: a block must return its input plus its branches "
                                    "(y = x + f(x)) with nothing after the add (ResNet's relu(x + f(x)) is not one)")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    inputs = [b[0] for b in islice(data, batches)] if data is not None else [example_inputs]
    influence = block_influence(model, blocks, inputs)
    ranked = sorted(blocks, key=lambda b: (influence[b], blocks.index(b)))  # least influence first

    def plan_of(count: int) -> Plan:
        return Plan(kind="blocks", blocks=[b for b in blocks if b in ranked[:count]],
                    meta={"criterion": "block-influence", "influence": {b: round(v, 6) for b, v in influence.items()}})

    count = int(ratio * len(blocks)) if ratio is not None else n
    measured: dict[int, float] = {}
    if budget is not None:
        count = _fewest_meeting(model, example_inputs, budget, plan_of, len(blocks))
    elif latency:
        count, measured = _fewest_measured(model, example_inputs, plan_of, len(blocks), speedup, latency_ms, threads)
    if not 0 <= count < len(blocks):
        raise ValueError(f"n must be in [0, {len(blocks) - 1}] for this model's {len(blocks)} residual blocks, got {count}")
    plan = plan_of(count)
    target = model if inplace else copy.deepcopy(model)
    size = (MacsCost(), ParamsCost())
    before = {c.name: int(price(c, target, example_inputs, [])) for c in size}
    apply_plan(target, plan)
    after = {c.name: int(price(c, target, example_inputs, [])) for c in size}
    stats = {"strategy": "blocks", "criterion": "block-influence", "blocks": len(blocks), "dropped": len(plan.blocks),
             "influence": influence, "macs_before": before["macs"], "macs_after": after["macs"],
             "params_before": before["params"], "params_after": after["params"]}
    if measured:
        stats["latency_ms"] = {f"{k} dropped": round(ms, 4) for k, ms in measured.items()}
    return PruneResult(target, plan, {}, stats)


def _fewest_measured(model: nn.Module, example_inputs: Any, plan_of, total: int, speedup: float | None,
                     latency_ms: float | None, threads: int) -> tuple[int, dict[int, float]]:
    """The fewest blocks whose removal meets a latency target measured on ONNX Runtime, and every
    candidate's measured latency (``{blocks dropped: ms}``, 0 = the dense model)."""
    from edgeprune.targets.measured import measure_models

    if speedup is not None and speedup < 1:
        raise BudgetError(f"speedup must be >= 1 (2 means twice as fast), got {speedup}")
    models = {"0": model}
    for count in range(1, total):
        models[str(count)] = apply_plan(copy.deepcopy(model), plan_of(count))
    timed = measure_models(models, example_inputs, threads=threads, rounds=8, runs=5, exporter="torchscript")
    measured = {int(k): m.ms for k, m in timed.items()}
    limit = measured[0] / speedup if speedup is not None else latency_ms
    meeting = [k for k in range(total) if measured[k] <= limit]
    if not meeting:
        raise BudgetError(f"the latency target ({limit:.4g} ms) cannot be met by dropping residual blocks: "
                          f"with {total - 1} of {total} dropped the model measures {measured[total - 1]:.4g} ms "
                          f"(dense {measured[0]:.4g} ms, ONNX Runtime, {threads} threads)")
    return min(meeting), measured


def _fewest_meeting(model: nn.Module, example_inputs: Any, budget: Budget, plan_of, total: int) -> int:
    """The fewest blocks (least influence first) whose removal meets every target of ``budget``."""
    if budget.latency_ms is not None or budget.speedup is not None:
        raise BudgetError("depth pruning takes macs=, params= or bytes= budgets (a latency target needs channels)")
    targets = budget.targets(model, example_inputs)
    if not targets:
        raise BudgetError("the budget names no cost (macs=, params= or bytes=) to drop blocks for")
    reached: dict[str, float] = {}
    for count in range(total):
        reached = {t.name: price(t.cost_model, model, example_inputs, [plan_of(count)]) for t in targets}
        if all(t.met(reached[t.name]) for t in targets):
            return count
    raise BudgetError("the budget cannot be met by dropping residual blocks: with all but one dropped, "
                      + ", ".join(f"{t.name} {reached[t.name]:.4g} > {t.limit:.4g}" for t in targets
                                  if reached[t.name] > t.limit))
