"""Prune to a latency budget on a target, and prove it there: allocate, measure, tighten, repeat.

1. The budget (``latency_ms``, or ``speedup`` over the unpruned model) becomes a predicted-latency
   target; :func:`~edgeprune.targets.allocate.allocate` picks kept counts on fast steps.
2. The pruned model is exported to the table's runtime (ONNX Runtime, LiteRT, ExecuTorch or
   OpenVINO) and measured there, interleaved with the unpruned one (``edgeprune.runtimes.timing``),
   so a speed-up is a ratio of two figures taken under the same load on the runtime planned for.
3. If the measurement misses the budget, the predicted target is tightened by the measured
   shortfall (NetAdapt's "measure, then adjust" loop) and the allocation runs again, up to
   ``max_attempts`` times. A ``speedup`` budget is tracked as a fraction of the unpruned model's
   latency measured in the same session, so load that drifts between sessions on a shared
   machine does not move the goal; the measurements are not mixed into the table's calibration
   (which comes from one session) for the same reason.

At ``budget.precision="int8"`` the table must have timed int8 kernels (``TableError`` otherwise),
and both models are measured as their INT8 files (the run's quantizer, random calibration): the
speed-up is pruned INT8 over dense INT8, the latency the pruned INT8 file's.

Example:
    >>> r = prune_to_latency(model, x, predictor, Budget(speedup=2.0))   # doctest: +SKIP
    >>> r.met, r.measured_speedup                                              # doctest: +SKIP
    (True, 2.07)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

from edgeprune.budget import Budget, BudgetError
from edgeprune.graph import analyze
from edgeprune.plan import Plan
from edgeprune.specs import ExampleInputs
from edgeprune.surgery import apply_plan, named_tensors
from edgeprune.targets.build import counts_plan, group_scores
from edgeprune.runtimes.timing import measure_models
from edgeprune.targets.predictor import LatencyPredictor

from edgeprune.targets.allocate import Allocation, allocate


@dataclass(frozen=True)
class LatencySearch:
    """How the allocate-and-measure loop searches (the target itself is a ``Budget``'s latency term).

    Attributes:
        max_attempts: allocate-and-measure rounds before giving up.
        margin: the k-th tightening aims ``k * margin`` below the miss (measurement noise).
        min_keep: no group keeps fewer than this fraction of its units.
        depth: residual blocks may be dropped whole beside the channel cuts (``allocate(blocks=)``),
            each weighed by its Block Influence on the example input relative to the mean block.
        headroom: an attempt is accepted only when its measured latency is at least this fraction
            under the goal (0: at the goal). A plan accepted right at the goal reads below it in about
            half of the re-measurements (measured: mobilenet_v2 accepted at 2.04x / 2.03x on ORT / LiteRT
            re-measured at 1.987x / 1.998x); a headroom of the rounds' spread (a few percent) keeps the
            verdict of a later measurement.
    """

    max_attempts: int = 4
    margin: float = 0.02
    min_keep: float = 0.1
    depth: bool = False
    headroom: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.headroom < 0.5:
            raise ValueError(f"headroom is a fraction of the goal in [0, 0.5), got {self.headroom}")


@dataclass(frozen=True)
class MeasureConfig:
    """How each attempt is measured (``edgeprune.targets.measured.measure_models``)."""

    threads: int = 2
    rounds: int = 20
    runs: int = 5
    warmup: int = 2
    exporter: str = "auto"


@dataclass
class Attempt:
    """One allocate-and-measure round."""

    target_ms: float
    allocation: Allocation
    dense_ms: float
    measured_ms: float
    met: bool


@dataclass
class LatencyResult:
    """What :func:`prune_to_latency` returns.

    Attributes:
        model: the pruned model (a copy; the caller's model is unchanged).
        plan: its plan (replayable with ``edgeprune.apply_plan``).
        met: whether the last measurement met the budget.
        attempts: every round, in order.
    """

    model: nn.Module
    plan: Plan
    met: bool
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def measured_ms(self) -> float:
        return self.attempts[-1].measured_ms

    @property
    def predicted_ms(self) -> float:
        return self.attempts[-1].allocation.predicted_ms

    @property
    def measured_speedup(self) -> float:
        return self.attempts[-1].dense_ms / self.attempts[-1].measured_ms


def prune_to_latency(model: nn.Module, example_inputs: ExampleInputs, predictor: LatencyPredictor,
                     budget: Budget, search: LatencySearch = LatencySearch(), *, criterion: str = "l2",
                     scored: tuple | None = None, measure: MeasureConfig | None = None, value: str = "compute",
                     log: Callable[[str], None] | None = None) -> LatencyResult:
    """Prune ``model`` (a copy) until its latency measured on the table's runtime meets ``budget``.

    Args:
        model: the unpruned model the predictor's table was built for.
        example_inputs: its input at the table's shape.
        predictor: the target's predictor.
        budget: a ``Budget`` with one latency term (``latency_ms`` or ``speedup``).
        search: how many rounds, the margin of each tightening, the least a group keeps.
        criterion: unit scores (any weight-only criterion of ``edgeprune.criteria``), unless ``scored``
            (``(groups, {group name: unit scores})``, e.g. from a strategy session) is given.
        value: what the allocator keeps per millisecond (``edgeprune.targets.allocate``).
        measure: measurement settings (default: the budget's thread count, which should be the table's).
        log: progress lines go here.

    Returns:
        A :class:`LatencyResult`; ``met`` is False when ``max_attempts`` rounds all missed (the last
        round's model is returned so the caller can see how close it came).

    Raises:
        BudgetError: the budget is below what the allocator can reach at all.
    """
    if (budget.latency_ms is None) == (budget.speedup is None):
        raise BudgetError("prune_to_latency needs a budget with exactly one of latency_ms= and speedup=")
    log = log or (lambda msg: None)
    predictor.table.require_precision(budget.precision)
    measure = measure or MeasureConfig(threads=budget.threads)
    if scored is not None:
        groups, scores = scored
    else:
        groups = analyze(model, example_inputs).groups
        scores = group_scores(model, groups, criterion)
    tensors = named_tensors(model)
    blocks = _block_weights(model, example_inputs) if search.depth else None
    attempts: list[Attempt] = []
    dense_pred = predictor.dense_ms()
    # the target as a fraction of the unpruned model's latency: each attempt measures both models in
    # one interleaved session, so the fraction survives load that moves between sessions
    fraction = 1 / budget.speedup if budget.speedup else None
    pruned, plan = model, Plan()
    goal_ms = budget.latency_ms
    for i in range(search.max_attempts):
        target = dense_pred * fraction if fraction is not None else goal_ms
        try:
            alloc = allocate(predictor, groups, scores, target, min_keep=search.min_keep, value=value, blocks=blocks)
        except BudgetError:
            if not attempts:
                raise
            log(f"attempt {i + 1}: target {target:.3f} ms is below what the allocator can reach; stopping")
            break
        plan = counts_plan(groups, scores, alloc.counts, tensors,
                           meta={"strategy": "latency", "criterion": criterion, "target_ms": round(target, 4),
                                 "target": predictor.table.target.get("key")})
        plan.blocks = list(alloc.blocks)
        pruned = apply_plan(model, plan)  # a copy
        got = _measure(predictor, {"dense": model, "pruned": pruned}, example_inputs, measure)
        dense_ms, ms = got["dense"].ms, got["pruned"].ms
        goal = budget.latency_limit(dense_ms)
        met = ms <= goal * (1 - search.headroom)
        attempts.append(Attempt(target, alloc, dense_ms, ms, met))
        log(f"attempt {i + 1}: predicted {alloc.predicted_ms:.3f} ms (target {target:.3f}), measured {ms:.3f} ms "
            f"beside {dense_ms:.3f} ms unpruned, goal {goal:.3f} ms"
            f"{f' less {search.headroom:.0%} headroom' if search.headroom else ''} -> {'met' if met else 'missed'}")
        if met:
            break
        # tighten by the measured shortfall (NetAdapt's measure-then-adjust), with a margin for noise
        # that grows with each miss: a search that keeps landing just short (the table's staircase is
        # flatter than the runtime's, or load moved) steps past the goal instead of creeping up to it
        step = max(1 - search.margin * len(attempts), 0.5)  # never more than halve the target in one step
        if fraction is not None:
            fraction = (alloc.predicted_ms / dense_pred) * (goal * (1 - search.headroom) / ms) * step
        else:
            goal_ms = alloc.predicted_ms * (goal * (1 - search.headroom) / ms) * step
    return LatencyResult(pruned, plan, attempts[-1].met, attempts)


def _block_weights(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, float]:
    """Each residual block's Block Influence over the mean block's (1.0: average); none found: empty."""
    from edgeprune.criteria.block_influence import block_influence
    from edgeprune.graph.blocks import residual_blocks

    blocks = residual_blocks(model, example_inputs)
    if not blocks:
        return {}
    influence = block_influence(model, blocks, [example_inputs])
    mean = sum(influence.values()) / len(influence) or 1.0
    return {b: influence[b] / mean for b in blocks}


def _measure(predictor: LatencyPredictor, models: dict[str, nn.Module], example_inputs: ExampleInputs,
             measure: MeasureConfig):
    """The models measured interleaved on the predictor's runtime, as its table measured its calibration."""
    runtime = predictor.table.runtime
    ort = runtime == "onnxruntime"
    return measure_models(models, example_inputs, runtime=runtime, threads=measure.threads, rounds=measure.rounds,
                          runs=measure.runs, warmup=measure.warmup,
                          fresh=ort and predictor.table.protocol.get("spinning", True),
                          export_options={"exporter": measure.exporter} if ort else None,
                          open_options={"spin": False} if ort else None, precision=predictor.table.precision)
