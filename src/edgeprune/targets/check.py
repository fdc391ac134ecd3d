"""Before any fine-tuning is spent: what will a plan buy on the target?

:func:`check_plan` predicts a plan's latency from the target's table and warns when the plan will
not pay there:

* masks (``kind`` weights/unstructured or N:M): ONNX Runtime's CPU kernels are dense, the zeros are
  multiplied like any other weight, so the masked part buys no time (edgeprune never derives a
  speed-up from sparsity; it is predicted, and measured, as the dense model);
* channel counts off the fast steps of the measured staircase: the kernel pads the count up to the
  step (the time of the next fast count, for fewer channels) or takes a slower path; the warning
  names the group and the fast counts around it, with their predicted latencies;
* a predicted speed-up under 5%: the plan shrinks MACs but not time.

Example:
    >>> report = check_plan(plan, predictor)     # doctest: +SKIP
    >>> print(report.summary())                   # doctest: +SKIP
    predicted 7.41 ms vs 10.02 ms unpruned (1.35x) on AMD EPYC|onnxruntime-1.32.0|threads-2
    warning: 12 groups keep channel counts off the fast steps ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgeprune.plan import Plan
from edgeprune.targets.predictor import LatencyPredictor, counts_of_plan

MASK_KINDS = ("weights", "unstructured")
MIN_GAIN = 0.05


@dataclass(frozen=True)
class OffStep:
    """A group whose kept count is off its fast step: ``kept`` between fast counts ``below`` and ``above``.

    ``ms_*`` are the plan's predicted latency with that one group at ``kept``, ``below`` or ``above``.
    """

    group: str
    kept: int
    below: int
    above: int
    ms_kept: float
    ms_below: float
    ms_above: float


@dataclass
class PlanCheck:
    """A plan's predicted latency on a target, and why it may not pay."""

    predicted_ms: float
    dense_ms: float
    target: str
    warnings: list[str] = field(default_factory=list)
    off_step: list[OffStep] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.predicted_ms

    def summary(self) -> str:
        lines = [f"predicted {self.predicted_ms:.3f} ms vs {self.dense_ms:.3f} ms unpruned "
                 f"({self.speedup:.2f}x) on {self.target}"]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_plan(plan: Plan, predictor: LatencyPredictor) -> PlanCheck:
    """Predict ``plan``'s latency on the predictor's target and list the reasons it may not pay.

    Args:
        plan: a plan for the table's model (structured, masked, or both).
        predictor: the target's predictor.

    Returns:
        A :class:`PlanCheck`.
    """
    counts = counts_of_plan(plan)
    dense = predictor.dense_ms()
    predicted = predictor.predict_counts(counts)
    report = PlanCheck(predicted, dense, str(predictor.table.target.get("key", "?")))
    if plan.masks:
        kinds = sorted({m.pattern for m in plan.masks})
        report.warnings.append(
            f"{len(plan.masks)} tensors are masked ({', '.join(kinds)}; plan kind {plan.kind!r}): ONNX Runtime's CPU "
            "kernels are dense, so masks buy no latency on this target (predicted as dense); use kind='channels'")
    for name, kept in sorted(counts.items()):
        steps = predictor.table.groups.get(name)
        if steps is None or steps.step <= 1 or kept % steps.step == 0 or kept == steps.size:
            continue
        below = max(steps.step, kept // steps.step * steps.step)
        above = min(steps.size, below + steps.step) if below < kept else below + steps.step
        at = {c: predictor.predict_counts({**counts, name: c}) for c in (kept, below, above)}
        report.off_step.append(OffStep(name, kept, below, above, at[kept], at[below], at[above]))
    if report.off_step:
        worst = sorted(report.off_step, key=lambda o: o.ms_kept - o.ms_above, reverse=True)[:3]
        examples = "; ".join(f"{o.group} keeps {o.kept} ({o.ms_kept:.3f} ms) where {o.above} would take "
                             f"{o.ms_above:.3f} ms and {o.below} {o.ms_below:.3f} ms" for o in worst)
        report.warnings.append(f"{len(report.off_step)} groups keep channel counts off the fast steps of this "
                               f"target's staircase (e.g. {examples})")
    if predicted > dense * (1 - MIN_GAIN):
        report.warnings.append(f"the plan is predicted {dense / predicted:.2f}x faster: it will not pay on this target")
    return report
