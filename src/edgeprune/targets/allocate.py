"""Allocate a latency budget across groups: keep the most value per millisecond.

The idea is NetAdapt's (Yang et al. 2018): shrink the network step by step, each step taking the
one layer change that costs the least for the latency it saves, with latency read from per-layer
tables measured on the target. HALP (Shen et al. 2022) phrases the same trade as a knapsack over
units with latency-aware costs; we keep the greedy form, which handles what a knapsack cannot: a
layer's time depends on two groups at once (its input and output channels), so the saving of a
step is recomputed from the current counts of both.

Candidate counts lie *on the fast steps of the measured staircase* (``LatencyTable.groups[g].step``);
a count between fast steps buys nothing (the kernel pads to the step) or costs extra. A unit's
importance is its score divided by its group's mean score, so that layers of different scale
compete (as ``strategies.global_ranking`` does). What a plan keeps (``value``):

* ``"compute"`` (default): every timed layer's MACs, weighted by the mean importance of the units
  it keeps on each side. The allocator then keeps the most importance-weighted compute per
  millisecond: it cuts first where the target's kernels are slow per MAC (depthwise convs,
  high-resolution layers with few channels) and keeps the layers that run near peak.
* ``"importance"``: the summed importance of the kept units, each unit counting alike wherever
  it sits.

Depth beside width (``blocks=``): a residual block may be dropped whole, as one more candidate step
of the descent: it saves every timed layer inside it at the current counts, and loses their value
weighted by the block's importance relative to the mean block (its Block Influence, Men et al. 2024,
over the mean: a block that changes its input less than the average costs less than its compute).
So a block goes where its layers run slow per MAC (early high-resolution stages) and change the
signal little; the untimed work inside it (its add) is left to the calibration.

Three passes: *descend* (take the step with the least value lost per millisecond saved, looking a
few fast counts ahead per group, until the prediction meets the target), *refill* (the last step
may overshoot: give units back while the prediction stays within the target), *exchange* (move one
step of width from one group to another while that keeps more value within the target: the greedy
is myopic where a layer's value is the product of two groups' counts).

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
from edgeprune.targets.predictor import LatencyPredictor, layer_channels

VALUES = ("compute", "importance")
LOOKAHEAD = 4  # lower fast counts weighed per group and step: one step may not pay where two do
EXCHANGE_ROUNDS = 50


@dataclass(frozen=True)
class Allocation:
    """The outcome of :func:`allocate`.

    Attributes:
        counts: ``{group: kept units}`` for every group that loses units.
        predicted_ms: the calibrated prediction at ``counts`` (never above the target).
        target_ms: the target it was allocated for.
        importance_kept: fraction of the summed normalised scores kept.
        steps: the steps taken, as ``(group, from count, to count, ms saved)`` (negative: given back);
            a dropped block is ``(block, 1, 0, ms saved)``.
        blocks: residual blocks dropped whole, in model order.
    """

    counts: dict[str, int]
    predicted_ms: float
    target_ms: float
    importance_kept: float
    steps: list[tuple[str, int, int, float]] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)


class _Problem:
    """Counts, layer times and plan value for one allocation; every query is local to a group's layers."""

    def __init__(self, predictor: LatencyPredictor, timed: Sequence[Group], scores: Mapping[str, torch.Tensor],
                 target_ms: float, min_keep: float, value: str, blocks: Mapping[str, float] | None = None) -> None:
        self.table = predictor.table
        self.calibration = predictor.calibration
        self.target_ms = target_ms
        self.layers = self.table.layers
        self.value = value
        self.size = {g.name: g.size for g in timed}
        self.counts = dict(self.size)
        self.options: dict[str, list[int]] = {}
        self.prefix: dict[str, list[float]] = {}  # importance of keeping the top k units
        for g in timed:
            steps = self.table.groups[g.name]
            floor = max(steps.step, math.ceil(g.size * min_keep), min(steps.levels))  # never below the timed grid
            self.options[g.name] = [c for c in steps.fast_counts(floor) if c % g.partitions == 0]
            s = scores[g.name].float()
            s = torch.sort(s / (s.mean() + 1e-12), descending=True).values
            self.prefix[g.name] = [0.0] + torch.cumsum(s, 0).tolist()
        self.touching: dict[str, list[int]] = {name: [] for name in self.size}
        for i, layer in enumerate(self.layers):
            for name in {layer.in_group, layer.out_group} - {None}:
                if name in self.touching:
                    self.touching[name].append(i)
        self.coupled = {name: {g for i in rows for g in (self.layers[i].in_group, self.layers[i].out_group)} - {name}
                        for name, rows in self.touching.items()}  # groups that share a timed layer
        self.block_rows = {b: [i for i, layer in enumerate(self.layers) if layer.name.startswith(b + ".")]
                           for b in (blocks or {})}
        self.block_weight = dict(blocks or {})
        self.dropped: list[str] = []
        self.dead: set[int] = set()  # rows inside dropped blocks: no time, no value
        self.ms = [self.layer_ms(i, self.counts) for i in range(len(self.layers))]

    @property
    def raw_ms(self) -> float:
        return sum(self.ms)

    def predicted_ms(self, raw_ms: float | None = None) -> float:
        """The calibrated prediction of a table sum (of the current counts when none is given)."""
        raw = self.raw_ms if raw_ms is None else raw_ms
        return self.calibration.scale * raw + self.calibration.offset_ms

    def fits(self, raw_ms: float | None = None) -> bool:
        # compared after calibration, exactly as the caller will read it: a slack on the raw sum
        # would let a plan through that is predicted a rounding error above the target
        return self.predicted_ms(raw_ms) <= self.target_ms

    def channels(self, i: int, counts: Mapping[str, int]) -> tuple[int, int]:
        return layer_channels(self.layers[i], counts)

    def layer_ms(self, i: int, counts: Mapping[str, int]) -> float:
        if i in self.dead:
            return 0.0
        return self.table.layer_ms(self.layers[i], *self.channels(i, counts))

    def _mean_importance(self, group: str | None, kept: int) -> float:
        return self.prefix[group][kept] / kept if group in self.prefix and kept else 1.0

    def layer_value(self, i: int, counts: Mapping[str, int]) -> float:
        if i in self.dead:
            return 0.0
        layer = self.layers[i]
        ci, co = self.channels(i, counts)
        weight = self._mean_importance(layer.out_group, co)
        if not layer.depthwise:
            weight *= self._mean_importance(layer.in_group, ci)
        return layer.macs(ci, co) * weight

    def value_change(self, changed: Sequence[str], trial: Mapping[str, int]) -> float:
        """Value of ``trial`` minus value of the current counts; they differ only in ``changed``."""
        if self.value == "importance":
            return sum(self.prefix[n][trial[n]] - self.prefix[n][self.counts[n]] for n in changed)
        rows = {i for n in changed for i in self.touching[n]}
        return sum(self.layer_value(i, trial) - self.layer_value(i, self.counts) for i in rows)

    def time_change(self, changed: Sequence[str], trial: Mapping[str, int]) -> tuple[float, dict[int, float]]:
        """(ms of ``trial`` minus ms now, the new times of the layers that change)."""
        new = {i: self.layer_ms(i, trial) for n in changed for i in self.touching[n]}
        return sum(t - self.ms[i] for i, t in new.items()), new

    def move(self, trial: Mapping[str, int], new_ms: Mapping[int, float]) -> None:
        self.counts = dict(trial)
        for i, t in new_ms.items():
            self.ms[i] = t

    def block_drop(self, block: str) -> tuple[float, float]:
        """(value lost, ms saved) of dropping ``block`` at the current counts."""
        rows = [i for i in self.block_rows[block] if i not in self.dead]
        lost = sum(self.layer_value(i, self.counts) for i in rows) * self.block_weight[block]
        return lost, sum(self.ms[i] for i in rows)

    def drop(self, block: str) -> None:
        self.dropped.append(block)
        for i in self.block_rows[block]:
            self.dead.add(i)
            self.ms[i] = 0.0

    def importance_kept(self) -> float:
        total = sum(p[-1] for p in self.prefix.values()) or 1.0
        return sum(self.prefix[g][c] for g, c in self.counts.items()) / total


def allocate(predictor: LatencyPredictor, groups: Sequence[Group], scores: Mapping[str, torch.Tensor],
             target_ms: float, *, min_keep: float = 0.1, value: str = "compute",
             blocks: Mapping[str, float] | None = None) -> Allocation:
    """Choose kept counts so the predicted latency is at most ``target_ms``, keeping the most value.

    Args:
        predictor: the target's calibrated predictor for this model.
        groups: the model's groups (only those the table times can lose units: the others do not
            change the predicted latency).
        scores: unit scores per group (higher is more important).
        target_ms: the predicted latency to reach (ms).
        min_keep: no group keeps fewer than this fraction of its units (nor fewer than one step, nor
            fewer than the smallest count its table timed: predictions below the grid are extrapolated).
        value: what a plan keeps, ``"compute"`` or ``"importance"`` (see the module docstring).
        blocks: residual blocks that may be dropped whole, each with its importance relative to the
            mean block (1.0: average); none: width only. Needs ``value="compute"``.

    Returns:
        An :class:`Allocation` whose ``predicted_ms`` <= ``target_ms``.

    Raises:
        BudgetError: the target is below what the smallest allowed counts are predicted to take.
    """
    if value not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {value!r}")
    cal = predictor.calibration
    if blocks and value != "compute":
        raise ValueError("blocks= (depth beside width) weighs a block by its compute: it needs value='compute'")
    if cal.scale <= 0:
        raise BudgetError("the latency calibration has a non-positive scale; rebuild the table")
    problem = _Problem(predictor, [g for g in groups if g.name in predictor.table.groups], scores, target_ms,
                       min_keep, value, blocks)
    steps: list[tuple[str, int, int, float]] = []
    _descend(problem, steps)
    if not problem.fits():
        floor_ms = problem.predicted_ms()
        raise BudgetError(f"latency target {target_ms:.3f} ms cannot be met: the smallest counts allowed "
                          f"(min_keep={min_keep:.0%} and the table's timed range) are predicted at "
                          f"{floor_ms:.3f} ms on {predictor.table.target.get('key', 'this target')}")
    _refill(problem, steps)
    _exchange(problem, steps)
    inside = {g for g, rows in problem.touching.items() if rows and set(rows) <= problem.dead}  # gone with a block
    changed = {g: c for g, c in problem.counts.items() if c < problem.size[g] and g not in inside}
    steps = [(g, a, b, ms * cal.scale) for g, a, b, ms in steps]
    order = list(blocks or {})
    return Allocation(changed, problem.predicted_ms(), target_ms, problem.importance_kept(), steps,
                      sorted(problem.dropped, key=order.index))


def _descend(p: _Problem, steps: list) -> None:
    """Take the step with the least value lost per ms saved until the target is met (or nothing saves)."""
    while not p.fits():
        best = None  # (value lost per ms saved, trial counts, new layer times, saving)
        for name, options in p.options.items():
            cur, tried = p.counts[name], 0
            for new in reversed([c for c in options if c < cur]):
                trial = {**p.counts, name: new}
                delta, new_ms = p.time_change([name], trial)
                if delta < -1e-9:
                    key = -p.value_change([name], trial) / -delta
                    if best is None or key < best[0]:
                        best = (key, name, trial, new_ms, -delta)
                    tried += 1
                    if tried == LOOKAHEAD:
                        break
        for block in p.block_rows:
            if block in p.dropped:
                continue
            lost, saving = p.block_drop(block)
            if saving > 1e-9 and (best is None or lost / saving < best[0]):
                best = (lost / saving, block, None, None, saving)
        if best is None:
            return
        _, name, trial, new_ms, saving = best
        if trial is None:  # a whole block
            steps.append((name, 1, 0, saving))
            p.drop(name)
            continue
        steps.append((name, p.counts[name], trial[name], saving))
        p.move(trial, new_ms)


def _refill(p: _Problem, steps: list) -> None:
    """Give units back, the most value first, while the prediction stays within the target."""
    while True:
        best = None
        for name, options in p.options.items():
            higher = [c for c in options if c > p.counts[name]]
            if not higher:
                continue
            trial = {**p.counts, name: higher[0]}
            delta, new_ms = p.time_change([name], trial)
            if p.fits(p.raw_ms + delta):
                gain = p.value_change([name], trial)
                if best is None or gain > best[0]:
                    best = (gain, name, trial, new_ms, delta)
        if best is None:
            return
        _, name, trial, new_ms, delta = best
        steps.append((name, p.counts[name], trial[name], -delta))
        p.move(trial, new_ms)


def _exchange(p: _Problem, steps: list) -> None:
    """Grow one group and shrink another to fit, while that keeps more value.

    Groups that share no layer trade up to ``LOOKAHEAD`` fast steps; groups that share one
    trade any amount."""
    for _ in range(EXCHANGE_ROUNDS):
        best = None
        for up, options in p.options.items():
            higher = [c for c in options if c > p.counts[up]]
            for down, down_options in p.options.items():
                if down == up:
                    continue
                # a layer between two groups costs the product of their counts: the best trade may
                # lie far from the greedy's balanced plan, so coupled pairs weigh every count
                reach = None if down in p.coupled[up] else LOOKAHEAD
                lower = [c for c in down_options if c < p.counts[down]][::-1]
                for grown in higher[:reach]:
                    for new in lower[:reach]:
                        trial = {**p.counts, up: grown, down: new}
                        delta, new_ms = p.time_change([up, down], trial)
                        if p.fits(p.raw_ms + delta):
                            gain = p.value_change([up, down], trial)
                            if gain > 1e-9 * (1 + abs(gain)) and (best is None or gain > best[0]):
                                best = (gain, up, down, trial, new_ms, delta)
                            break  # the nearest lower count that fits is the one to weigh
        if best is None:
            return
        _, up, down, trial, new_ms, delta = best
        steps.append((up, p.counts[up], trial[up], 0.0))
        steps.append((down, p.counts[down], trial[down], -delta))
        p.move(trial, new_ms)

