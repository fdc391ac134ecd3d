"""Allocate a latency budget across groups: keep the most importance per millisecond.

The idea is NetAdapt's (Yang et al. 2018): shrink the network step by step, each step taking the
one layer change that costs the least accuracy for the latency it saves, with latency read from
per-layer tables measured on the target. HALP (Shen et al. 2022) phrases the same trade as a
knapsack over units with latency-aware costs; we keep the greedy form, which handles what a
knapsack cannot: a layer's time depends on two groups at once (its input and output channels),
so the saving of a step is recomputed from the current counts of both.

Each step, for every group, the candidate is the next lower kept count *on a fast step of the
measured staircase* (``LatencyTable.groups[g].step``) that the predictor says is faster; a count
between fast steps buys nothing (the kernel pads to the step) or costs extra. The importance lost is
the sum of the removed units' scores, each group's scores divided by their mean so that layers of
different scale compete (as ``strategies.global_ranking`` does). The step with the least importance
lost per millisecond saved is taken, until the prediction meets the target.

Example:
    >>> counts = allocate(predictor, groups, scores, target_ms=5.0).counts   # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from edgeprune.budget import BudgetError
from edgeprune.graph.groups import Group
from edgeprune.targets.predictor import LatencyPredictor


@dataclass(frozen=True)
class Allocation:
    """The outcome of :func:`allocate`.

    Attributes:
        counts: ``{group: kept units}`` for every group that loses units.
        predicted_ms: the calibrated prediction at ``counts`` (never above the target).
        target_ms: the target it was allocated for.
        importance_kept: fraction of the summed normalised scores kept.
        steps: the greedy steps taken, as ``(group, from count, to count, ms saved)``.
    """

    counts: dict[str, int]
    predicted_ms: float
    target_ms: float
    importance_kept: float
    steps: list[tuple[str, int, int, float]] = field(default_factory=list)


def allocate(predictor: LatencyPredictor, groups: Sequence[Group], scores: Mapping[str, torch.Tensor],
             target_ms: float, *, min_keep: float = 0.1) -> Allocation:
    """Choose kept counts so the predicted latency is at most ``target_ms``, keeping the most importance.

    Args:
        predictor: the target's calibrated predictor for this model.
        groups: the model's groups (only those the table times can lose units: the others do not
            change the predicted latency).
        scores: unit scores per group (higher is more important).
        target_ms: the predicted latency to reach (ms).
        min_keep: no group keeps fewer than this fraction of its units (nor fewer than one step, nor
            fewer than the smallest count its table timed: predictions below the grid are extrapolated).

    Returns:
        An :class:`Allocation` whose ``predicted_ms`` <= ``target_ms``.

    Raises:
        BudgetError: the target is below what the smallest allowed counts are predicted to take.
    """
    table = predictor.table
    cal = predictor.calibration
    if cal.scale <= 0:
        raise BudgetError("the latency calibration has a non-positive scale; rebuild the table")
    raw_target = (target_ms - cal.offset_ms) / cal.scale
    timed = [g for g in groups if g.name in table.groups]
    counts = {g.name: g.size for g in timed}
    cands = {}
    prefix = {}
    for g in timed:
        steps = table.groups[g.name]
        floor = max(steps.step, math.ceil(g.size * min_keep), min(steps.levels))  # never below the timed grid
        cands[g.name] = [c for c in steps.fast_counts(floor) if c % g.partitions == 0]
        s = scores[g.name].float()
        s = torch.sort(s / (s.mean() + 1e-12), descending=True).values
        prefix[g.name] = [0.0] + torch.cumsum(s, 0).tolist()  # importance of keeping the top k
    total = sum(p[-1] for p in prefix.values()) or 1.0

    touching: dict[str, list[int]] = {g.name: [] for g in timed}
    layer_list = table.layers
    for i, layer in enumerate(layer_list):
        for name in {layer.in_group, layer.out_group} - {None}:
            if name in touching:
                touching[name].append(i)

    def layer_time(i: int, cur: Mapping[str, int]) -> float:
        layer = layer_list[i]
        co = cur.get(layer.out_group, layer.c_out) if layer.out_group else layer.c_out
        ci = co if layer.depthwise else (cur.get(layer.in_group, layer.c_in) if layer.in_group else layer.c_in)
        return table.layer_ms(layer, ci, co)

    ms = [layer_time(i, counts) for i in range(len(layer_list))]
    raw = sum(ms)
    taken: list[tuple[str, int, int, float]] = []
    while raw > raw_target + 1e-12:
        best = None  # (importance per ms, group, new count, new layer times, saving)
        for name, options in cands.items():
            cur = counts[name]
            lower = [c for c in options if c < cur]
            for new in reversed(lower):  # nearest lower fast count first; skip ones that save nothing
                trial = {**counts, name: new}
                new_ms = {i: layer_time(i, trial) for i in touching[name]}
                saving = sum(ms[i] - t for i, t in new_ms.items())
                if saving > 1e-9:
                    loss = prefix[name][cur] - prefix[name][new]
                    key = loss / saving
                    if best is None or key < best[0]:
                        best = (key, name, new, new_ms, saving)
                    break
        if best is None:
            floor_ms = cal.scale * raw + cal.offset_ms
            raise BudgetError(f"latency target {target_ms:.3f} ms cannot be met: the smallest counts allowed "
                              f"(min_keep={min_keep:.0%} and the table's timed range) are predicted at "
                              f"{floor_ms:.3f} ms on {table.target.get('key', 'this target')}")
        _, name, new, new_ms, saving = best
        taken.append((name, counts[name], new, saving * cal.scale))
        counts[name] = new
        for i, t in new_ms.items():
            ms[i] = t
        raw = sum(ms)
    kept = sum(prefix[g][c] for g, c in counts.items()) / total
    changed = {g: c for g, c in counts.items() if c < next(x.size for x in timed if x.name == g)}
    return Allocation(changed, cal.scale * raw + cal.offset_ms, target_ms, kept, taken)
