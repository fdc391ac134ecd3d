"""Structured pruning inside the user's own training loop.

``GradualPruner.step()`` is called after each optimizer step. On the pruning steps of the
schedule (``start, start + every, ..., end``) it re-analyzes the model as it is, scores it, and
cuts channels in place so the model's cost reaches the schedule's share of the budget. The
parameters it cuts are *new tensor objects*: an optimizer built before the cut still holds the
old ones. Pass the optimizer to the pruner and it is rebuilt in place: its parameter groups point
at the new tensors (same hyper-parameters, same learning-rate scheduler), and per-parameter state
(momentum, Adam's moments) is sliced exactly like the weights, so surviving channels keep their
history. Without ``optimizer=`` you must build a new optimizer after every step that returns
``True`` from :attr:`GradualPruner.pruned_last_`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from edgeprune.budget import Budget, meta_copy
from edgeprune.criteria import Criterion, ScoreContext, get_criterion, needs_of
from edgeprune.plan import Plan
from edgeprune.schedule import scheduled_amount
from edgeprune.strategies.session import ALLOCATIONS, Scored, Session
from edgeprune.surgery import apply_plan, named_tensors


class GradualPruner:
    """Prune channels gradually while the model trains (estimator manners: ``__init__`` stores, ``step`` acts).

    Args:
        model: the model being trained; pruned in place.
        example_inputs: an example input for analysis and MAC counting.
        budget: the final cost (e.g. ``Budget(macs=0.5)``).
        start: first pruning step.
        end: last pruning step (the budget is met from here on).
        every: steps between pruning steps.
        schedule: ``"cubic"`` (Zhu & Gupta 2017) or ``"linear"``.
        criterion: a criterion name or callable. ``"taylor"``/``"fisher"`` read the gradients the
            last ``backward()`` left in ``.grad`` (call ``step()`` before ``zero_grad``).
        allocation: ``"global"`` or ``"uniform"``.
        optimizer: rebuilt in place after each cut (see the module docstring).
        ignore: modules whose outputs keep every unit.
        round_to: keep channel counts at multiples of this.

    Attributes (learned, set by ``step``):
        step_: steps taken.
        amount_: the scheduled share of the budget reached so far (0 to 1).
        plans_: the plans applied, oldest first (also ``edgeprune.plan.plans_of(model)``).
        costs_: the model's cost per budget target after the last cut.
        pruned_last_: whether the last ``step()`` cut the model.

    Example:
        >>> import torch, torch.nn as nn
        >>> model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> pruner = GradualPruner(model, torch.randn(1, 8), Budget(macs=0.5), start=0, end=4, every=2, optimizer=opt)
        >>> for _ in range(6):
        ...     x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        ...     opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
        ...     _ = pruner.step()
        >>> pruner.costs_["macs"] <= 0.5 * (8 * 32 + 32 * 32 + 32 * 2)
        True
    """

    def __init__(self, model: nn.Module, example_inputs: Any, budget: Budget, *, start: int = 0, end: int = 1000,
                 every: int = 100, schedule: str = "cubic", criterion: str | Criterion = "l2",
                 allocation: str = "global", optimizer: torch.optim.Optimizer | None = None, ignore=(),
                 round_to: int = 1) -> None:
        self.model, self.example_inputs, self.budget = model, example_inputs, budget
        self.start, self.end, self.every, self.schedule = start, end, every, schedule
        self.criterion, self.allocation, self.optimizer = criterion, allocation, optimizer
        self.ignore, self.round_to = ignore, round_to

    def _validate(self) -> None:
        if self.end <= self.start or self.every < 1:
            raise ValueError(f"need end > start and every >= 1 (got start={self.start}, end={self.end}, every={self.every})")
        if not self.budget.has_cost:
            raise ValueError("GradualPruner needs a cost budget (macs, params, bytes or latency)")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; choose one of {sorted(ALLOCATIONS)}")
        if "activations" in needs_of(get_criterion(self.criterion)):
            raise ValueError("activation criteria need a separate data pass; use edgeprune.prune for them")

    def step(self) -> bool:
        """Advance one training step; cut the model when the schedule says so.

        Returns:
            Whether the model was cut (then its parameters are new objects; see the module docstring).
        """
        if not hasattr(self, "step_"):
            self._validate()
            self.step_, self.amount_, self.plans_, self.costs_ = 0, 0.0, [], {}
            self._targets = self.budget.targets(self.model, self.example_inputs)
        t = self.step_
        self.pruned_last_ = False
        n = max(1, -(-(self.end - self.start) // self.every))
        due = t >= self.start and ((t - self.start) % self.every == 0 or t >= self.start + n * self.every)
        amount = scheduled_amount(t, 1.0, start=self.start, every=self.every, n=n, kind=self.schedule)
        if due and amount > self.amount_:
            self._cut(amount)  # if this raises, the step is not counted and can be retried
            self.amount_ = amount
        self.step_ += 1
        return self.pruned_last_

    def _cut(self, amount: float) -> None:
        criterion = get_criterion(self.criterion)
        session = Session(self.example_inputs, criterion, str(self.criterion), self.ignore, round_to=self.round_to)
        goal = [replace(t, limit=t.original - amount * (t.original - t.limit)) for t in self._targets]
        if needs_of(criterion):
            scored = self._score_with_grads(session, criterion)
        else:
            scored = session.score(self.model)
        plan = session.fit(self.model, scored, goal, self.allocation).plan
        plan.meta.update({"strategy": "gradual", "step": self.step_ - 1, "scheduled": amount})
        if not plan.groups:
            return
        states = _sliced_optimizer_state(self.model, self.optimizer, plan) if self.optimizer else None
        old = dict(self.model.named_parameters(remove_duplicate=False))
        apply_plan(self.model, plan, inplace=True)
        if self.optimizer is not None:
            _rebind_optimizer(self.optimizer, old, dict(self.model.named_parameters(remove_duplicate=False)), states)
        self.plans_.append(plan)
        self.costs_ = session.costs(self._targets, self.model, [])
        self.pruned_last_ = True

    def _score_with_grads(self, session: Session, criterion: Criterion) -> Scored:
        named = dict(self.model.named_parameters(remove_duplicate=False))
        if any(p.grad is None for p in named.values() if p.requires_grad):
            raise ValueError(f"criterion {self.criterion!r} reads .grad: call step() after backward(), before zero_grad()")
        grads = {n: p.grad.detach().float() for n, p in named.items() if p.grad is not None}
        from edgeprune.graph import analyze

        analysis = analyze(self.model, self.example_inputs, ignore=self.ignore)
        tensors = named_tensors(self.model)
        ctx = ScoreContext(tensors, grads, 0, {n: g.pow(2) for n, g in grads.items()}, batch_grads=[grads])
        return Scored(analysis, tensors, {g.name: criterion(g, ctx) for g in analysis.groups})


def _sliced_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, plan: Plan) -> dict[str, dict]:
    """Each parameter's optimizer state, cut by ``plan`` exactly as the parameter will be: ``{name: state}``.

    The state tensors shaped like their parameter are put in place of the parameters on a copy
    whose other tensors live on the meta device; the plan cuts that copy with the same surgery.
    """
    named = dict(model.named_parameters(remove_duplicate=False))
    keys = {k for p in named.values() for k, v in optimizer.state.get(p, {}).items()
            if isinstance(v, torch.Tensor) and v.shape == p.shape}
    out: dict[str, dict] = {n: dict(optimizer.state[p]) for n, p in named.items() if p in optimizer.state}
    for key in keys:
        shadow, _ = meta_copy(model, None)
        with torch.no_grad():
            for n, p in named.items():
                value = optimizer.state.get(p, {}).get(key)
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    module, _, attr = n.rpartition(".")
                    setattr(shadow.get_submodule(module) if module else shadow, attr,
                            nn.Parameter(value.detach().clone(), requires_grad=False))
        apply_plan(shadow, plan, inplace=True)
        cut = dict(shadow.named_parameters(remove_duplicate=False))
        for n in out:
            if key in out[n] and isinstance(out[n][key], torch.Tensor) and out[n][key].shape == named[n].shape:
                out[n][key] = cut[n].detach().clone()
    return out


def _rebind_optimizer(optimizer: torch.optim.Optimizer, old: dict[str, nn.Parameter], new: dict[str, nn.Parameter],
                      states: dict[str, dict] | None) -> None:
    """Point the optimizer's groups at the new parameters and give them their sliced state."""
    name_of = {id(p): n for n, p in old.items()}
    for group in optimizer.param_groups:
        group["params"] = [new[name_of[id(p)]] if id(p) in name_of else p for p in group["params"]]
    old_state = optimizer.state
    optimizer.state = defaultdict(dict)
    for n, p in new.items():
        if states and n in states and p not in optimizer.state:
            optimizer.state[p] = states[n]
    for p, s in old_state.items():  # parameters outside the model keep their state
        if id(p) not in name_of:
            optimizer.state[p] = s

