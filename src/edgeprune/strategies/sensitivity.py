"""Sensitivity-based pruning: measure how much each group can lose, then spend the budget where it hurts least.

1. **Scan.** For each group alone, remove its lowest-scoring ``r`` of units for each ``r`` in
   ``ratios`` and measure accuracy on validation data (Li et al. 2017, "Pruning Filters for
   Efficient ConvNets", sec. 3.2 / fig. 2). The curves are plain data (:class:`Curves`: JSON,
   reproducible for a given seed and criterion). With ``signal="loss"`` the scan measures the
   mean loss on the calibration ``data`` instead (as -100 x loss, so "higher is better" and drops
   add the same way): a trained model is near 100% accurate on its own training samples, so
   accuracy there is flat until a cut is ruinous, while the loss moves with every cut.
2. **Choose.** Predicted loss of a group at a level = the accuracy drop of its curve up to that
   level (running maximum, so it never falls as more is removed); drops add across groups.
   Greedily take the next level of the group that loses the least predicted accuracy per unit
   of cost saved (cost = the sum over budget targets of the fraction of the original saved,
   priced exactly on the meta device), until every target is met. This is the greedy solution
   of the multiple-choice knapsack that the additive model poses.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch.nn as nn

from edgeprune.budget import BudgetError, Target
from edgeprune.plan import Plan
from edgeprune.strategies.base import lowest, make_plan, removable
from edgeprune.strategies.session import Scored, Session
from edgeprune.result import Proposal
from edgeprune.surgery import apply_plan

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Curve:
    """One group's scan: units removed and accuracy measured at each ratio."""

    size: int
    ratios: list[float]
    removed: list[int]
    accuracy: list[float]


@dataclass
class Curves:
    """Sensitivity curves of a model: JSON-serialisable; the same seed and criterion give the same curves.

    ``metric`` names what ``base_accuracy`` and each curve's ``accuracy`` hold: ``"accuracy"``
    (the user's ``evaluate``, points) or ``"-100 x loss"`` (``signal="loss"``).
    """

    base_accuracy: float
    criterion: str
    seed: int
    groups: dict[str, Curve] = field(default_factory=dict)
    metric: str = "accuracy"

    def drop(self, name: str) -> list[float]:
        """Predicted accuracy drop of group ``name`` at each level (level 0 = nothing removed),
        as a running maximum so it never falls as more units go."""
        out, worst = [0.0], 0.0
        for acc in self.groups[name].accuracy:
            worst = max(worst, self.base_accuracy - acc)
            out.append(worst)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> Curves:
        return cls(data["base_accuracy"], data["criterion"], data["seed"],
                   {k: Curve(**v) for k, v in data["groups"].items()}, data.get("metric", "accuracy"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


SIGNALS = {"evaluate": "accuracy", "loss": "-100 x loss"}


def measure_signal(session: Session, model: nn.Module, signal: str) -> float:
    """A freshly cut candidate's score, higher is better: the user's accuracy or -100 x the loss on ``data``."""
    if signal == "loss":
        return session.loss_points(model)
    return session.measure(model)


def scan(session: Session, model: nn.Module, scored: Scored, ratios=DEFAULT_RATIOS,
         signal: str = "evaluate") -> Curves:
    """Measure each group's curve (each point prunes that group alone, on a copy).

    Args:
        session: supplies ``evaluate`` (or ``data`` for the loss) and ``round_to``.
        model: the model (not changed).
        scored: its groups and scores.
        ratios: fractions of each group's units to remove.
        signal: ``"evaluate"`` (accuracy) or ``"loss"`` (see the module docstring).

    Returns:
        :class:`Curves`; points that round to the same unit count are measured once.
    """
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {sorted(SIGNALS)}, got {signal!r}")
    base = session.accuracy(model) if signal == "evaluate" else session.loss_points(model)
    curves = Curves(base, session.criterion_name, session.seed, metric=SIGNALS[signal])
    # Every point's plan first (plain data), then every measurement at once: each is independent,
    # so an executor may spread them over workers and the curves stay those of the serial scan.
    points: dict[tuple[str, int], Plan] = {}
    counts: dict[str, list[int]] = {}
    for g in scored.groups:
        counts[g.name] = [removable(g, int(round(g.size * r)), session.round_to) for r in ratios]
        for n in counts[g.name]:
            if n and (g.name, n) not in points:
                points[g.name, n] = make_plan([g], {g.name: lowest(scored.scores[g.name], n, g.partitions)},
                                              scored.tensors)
    names = [f"{name} -{n}" for name, n in points]
    scores = dict(zip(points, session.measure_plans(model, list(points.values()), names, signal)))
    for g in scored.groups:
        curve = Curve(g.size, [float(r) for r in ratios], list(counts[g.name]), [])
        # a point that rounds to no unit removed scores as the unpruned model (as the serial scan did)
        curve.accuracy = [float(scores[g.name, n]) if n else float(base) for n in counts[g.name]]
        curves.groups[g.name] = curve
    return curves


def sensitivity_curves(model: nn.Module, example_inputs, evaluate, *, criterion: str = "l2",
                       ratios=DEFAULT_RATIOS, data=None, calibration_batches: int | None = 8, ignore=(),
                       round_to: int = 1, seed: int = 0, signal: str = "evaluate") -> Curves:
    """Each group's accuracy when it alone loses each of ``ratios`` of its units (for reports and the CLI).

    Args:
        model: the trained model (not changed).
        example_inputs: an example input.
        evaluate: ``evaluate(model) -> accuracy`` in points.
        criterion: which units go first.
        ratios: fractions to try.
        data: batches for BatchNorm recalibration of each cut copy (and for data-driven criteria).
        calibration_batches: batches of ``data`` to use.
        ignore: modules whose outputs keep every unit.
        round_to: keep channel counts at multiples of this.
        seed: for random criteria.
        signal: ``"evaluate"`` (accuracy) or ``"loss"`` (-100 x mean loss on ``data``).

    Returns:
        :class:`Curves` (``.to_json()`` for a file).

    Example:
        >>> import torch, torch.nn as nn
        >>> m = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> x = torch.randn(64, 4)
        >>> c = sensitivity_curves(m, x[:1], lambda k: float((k(x).argmax(1) == m(x).argmax(1)).float().mean() * 100))
        >>> list(c.groups), c.base_accuracy
        (['0'], 100.0)
    """
    from edgeprune.criteria import get_criterion

    session = Session(example_inputs, get_criterion(criterion), criterion, ignore=ignore, round_to=round_to, seed=seed,
                      data=data, calibration_batches=calibration_batches, evaluate=evaluate)
    return scan(session, model, session.score(model), ratios, signal)


def choose(session: Session, model: nn.Module, scored: Scored, curves: Curves,
           targets: list[Target]) -> tuple[Plan, dict[str, int]]:
    """Per-group levels that meet ``targets`` at the least predicted drop (greedy; see the module docstring).

    Returns:
        (the plan, {group: units removed}).

    Raises:
        BudgetError: every group at its deepest level still misses a target.
    """
    names = [g.name for g in scored.groups]
    by_name = {g.name: g for g in scored.groups}
    drops = {n: curves.drop(n) for n in names}
    level = dict.fromkeys(names, 0)

    def removed_at(n: str, lv: int) -> int:
        return curves.groups[n].removed[lv - 1] if lv else 0

    def plan_for(levels: dict[str, int], exact: dict[str, int] | None = None) -> Plan:
        counts = {n: removed_at(n, lv) for n, lv in levels.items()} | (exact or {})
        removals = {n: lowest(scored.scores[n], k, by_name[n].partitions) for n, k in counts.items() if k}
        return make_plan(scored.groups, removals, scored.tensors, meta={
            "criterion": session.criterion_name, "strategy": "sensitivity", "round_to": session.round_to})

    def saved(costs: dict[str, float]) -> float:
        return sum((t.original - costs[t.name]) / t.original for t in targets)

    def met(costs: dict[str, float]) -> bool:
        return all(t.met(costs[t.name]) for t in targets)

    plan = plan_for(level)
    costs = session.costs(targets, model, [plan])
    last = None
    while not met(costs):
        best = None
        for n in names:
            if level[n] >= len(curves.groups[n].ratios):
                continue
            trial = {**level, n: level[n] + 1}
            trial_costs = session.costs(targets, model, [plan_for(trial)])
            gain = saved(trial_costs) - saved(costs)
            if gain <= 0:
                continue
            loss = drops[n][trial[n]] - drops[n][level[n]]
            key = (loss / gain, -gain)  # least drop per cost saved; on ties the bigger saving
            if best is None or key < best[0]:
                best = (key, n, trial_costs)
        if best is None:
            missed = "; ".join(f"{t.name} {costs[t.name]:.4g} > {t.limit:.4g}" for t in targets if not t.met(costs[t.name]))
            raise BudgetError(f"sensitivity: the budget cannot be met with the scanned ratios (up to "
                              f"{max(curves.groups[names[0]].ratios):.0%} per group): {missed}")
        _, n, costs = best
        level[n] += 1
        last = n
    removed = {n: removed_at(n, level[n]) for n in names}
    if last is not None:  # the last step jumps a whole scanned level: take only as many units as the budget needs
        removed[last], costs = _fewest_that_meet(
            by_name[last], removed_at(last, level[last] - 1), removed[last], session.round_to,
            lambda k: session.costs(targets, model, [plan_for(level, {last: k})]), met, costs)
    plan = plan_for(level, removed)
    plan.meta["predicted_drop"] = sum(drops[n][level[n]] for n in names)
    plan.meta["budget_fit"] = {k: float(v) for k, v in costs.items()}
    return plan, removed


def _fewest_that_meet(group, low: int, high: int, round_to: int, costs_at, met, high_costs) -> tuple[int, dict]:
    """Bisect the units removed from ``group`` between ``low`` (misses) and ``high`` (meets) for the
    fewest that still meet the budget; ``(units, their costs)``."""
    best = (high, high_costs)
    while True:
        mid = removable(group, (low + best[0]) // 2, round_to)
        if mid <= low or mid >= best[0]:
            return best
        mid_costs = costs_at(mid)
        if met(mid_costs):
            best = (mid, mid_costs)
        else:
            low = mid


@dataclass(frozen=True)
class Sensitivity:
    """Scan every group at ``ratios`` on validation data, then choose per-group amounts under the budget.

    Needs ``evaluate=`` (or ``data=`` with ``signal="loss"``) and a cost budget. Cost: one
    evaluation of the model per (group, distinct
    unit count) — ``groups x len(ratios)`` at most — plus about ``groups x levels`` plans priced on
    the meta device; then the fine-tuning.

    The greedy plan assumes drops add up across groups; with ``compare`` it is measured beside
    the uniform and global plans at the same budget (two more fits and three evaluations) and the
    best measured plan is kept.

    Attributes:
        ratios: fractions of each group's units to try removing.
        curves: curves from an earlier scan of the same model (``Curves.from_dict``) to reuse.
        compare: also measure the uniform and global plans and keep the best.
        signal: what the scan and the comparison measure: ``"evaluate"`` (the user's accuracy) or
            ``"loss"`` (mean loss on ``data``; for when accuracy on that data saturates).
    """

    ratios: tuple[float, ...] = DEFAULT_RATIOS
    curves: Curves | None = None
    compare: bool = True
    signal: str = "evaluate"
    name: str = "sensitivity"

    def propose(self, session: Session, model: nn.Module, targets: list[Target], ratio: float | None) -> Proposal:
        if not targets:
            raise ValueError("the sensitivity strategy needs a cost budget (budget=Budget(macs=..., ...))")
        scored = session.score(model)
        with session.meter.phase("scan"):
            curves = self.curves or scan(session, model, scored, self.ratios, self.signal)
        plan, removed = choose(session, model, scored, curves, targets)
        # The additive model ignores how groups interact; measure its plan beside the uniform and
        # global plans at the same budget and keep the best (never worse than them on this data).
        candidates = {"sensitivity": plan}
        if self.compare:
            for allocation in ("uniform", "global"):
                candidates[allocation] = session.fit(model, scored, targets, allocation).plan
        measured = {}
        if len(candidates) > 1:
            with session.meter.phase("scan"):
                measured = dict(zip(candidates, session.measure_plans(
                    model, list(candidates.values()), [f"candidate {k}" for k in candidates], self.signal)))
        chosen = max(measured, key=lambda k: (measured[k], k == "sensitivity")) if measured else "sensitivity"
        plan = candidates[chosen]
        plan.meta.update({"strategy": "sensitivity", "chosen": chosen})
        pruned = apply_plan(model, plan)
        session.recover(pruned)
        return Proposal(pruned, [plan], {
            "curves": curves.to_dict(), "removed": removed, "predicted_drop": candidates["sensitivity"].meta["predicted_drop"],
            "candidates": measured, "chosen": chosen, **scored.summary()}, recovered=True, skipped=scored.analysis.skipped)
