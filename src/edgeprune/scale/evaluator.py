"""Candidate plans measured as tasks: what a worker receives, rebuilds and returns.

A task is ``measure_plan(job, plan)``: the :class:`EvalJob` (shared by every task of a scan and put
once in the executor's object store) names the model by its spec and carries its weights as a
state dict, names the data and evaluation by their specs, and holds the calibration batches; the
plan is plain data. The worker rebuilds the model from the spec (the architecture) and loads the
weights, cuts it with the plan, recalibrates BatchNorm on the same batches the serial run uses and
returns the score. So the scores are those of the serial run, whatever the worker or order.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgeprune.scale.executor import Executor, ExecutorError


@dataclass(frozen=True)
class EvalJob:
    """What every task of one measurement round shares (plain data; see the module docstring).

    Attributes:
        model: the model spec (``edgeprune.specs.load_model``): the architecture.
        weights: its state dict.
        data: the data spec whose validation split ``evaluate`` scores (``None`` with ``signal="loss"``).
        evaluate: the evaluation spec (``None``: top-1 accuracy).
        seed, batch_size, input_shape, val_fraction: as the run built its data with.
        calibration: the batches BatchNorm is recalibrated on (and the loss measured on).
        recalibrate: recalibrate BatchNorm after each cut.
        signal: ``"evaluate"`` (the evaluation) or ``"loss"`` (-100 x the mean cross-entropy).
        token: tells workers this job's weights from another job's of the same spec.
    """

    model: str
    weights: dict[str, torch.Tensor]
    data: str | None
    evaluate: str | None = None
    seed: int = 0
    batch_size: int | None = None
    input_shape: tuple[int, ...] | None = None
    val_fraction: float = 0.1
    calibration: list = field(default_factory=list)
    recalibrate: bool = True
    signal: str = "evaluate"
    token: str = ""


_BUILT: dict[str, tuple[nn.Module, Callable[[nn.Module], float] | None]] = {}  # per worker process: the last job


def _build(job: EvalJob) -> tuple[nn.Module, Callable[[nn.Module], float] | None]:
    """The job's model (from its spec, with its weights) and evaluation, built once per worker process."""
    if job.token not in _BUILT:
        from edgeprune.run.inputs import bind_evaluate, build_model, load_callable, load_data

        model = build_model(job.model, job.seed, trained=False)
        model.load_state_dict(job.weights)
        model.eval()
        evaluate = None
        if job.signal == "evaluate":
            _, val = load_data(job.data, seed=job.seed, batch_size=job.batch_size, model=model,
                               input_shape=job.input_shape, val_fraction=job.val_fraction)
            evaluate = bind_evaluate(load_callable(job.evaluate, "--evaluate") if job.evaluate else None, val)
        _BUILT.clear()
        _BUILT[job.token] = (model, evaluate)
    return _BUILT[job.token]


def measure_plan(job: EvalJob, plan: dict) -> float:
    """One task: the score of ``model`` cut with ``plan`` (a ``Plan.to_dict()``), higher is better.

    Args:
        job: the shared :class:`EvalJob`.
        plan: the candidate, as plain data.

    Returns:
        The accuracy (points) after BatchNorm recalibration, or -100 x the loss on the calibration batches.
    """
    from edgeprune.plan import Plan
    from edgeprune.recover.batchnorm import recalibrate_bn
    from edgeprune.surgery import apply_plan

    model, evaluate = _build(job)
    trial = apply_plan(model, Plan.from_dict(plan))  # a copy
    if job.recalibrate and job.calibration:
        recalibrate_bn(trial, job.calibration, None)
    if job.signal == "loss":
        from edgeprune.criteria.data import mean_loss

        return -100.0 * mean_loss(trial, job.calibration, None, None)[0]
    return float(evaluate(trial))


@dataclass
class Evaluator:
    """Measures a strategy's candidate plans on an executor (``edgeprune.prune(..., evaluator=...)``).

    The specs must describe the same evaluation as the ``evaluate`` given to ``prune`` (the CLI
    builds both from the run's specs): the workers measure with these, the caller with that.

    Attributes:
        executor: where the tasks run (``edgeprune.scale.get_executor``).
        data: the data spec (its validation split is evaluated).
        evaluate: the evaluation spec (``None``: top-1 accuracy).
        seed, batch_size, input_shape, val_fraction: as the run's data was built.
        on_done: ``on_done(task name, score, finished, total)`` as each task finishes (progress).
    """

    executor: Executor
    data: str | None
    evaluate: str | None = None
    seed: int = 0
    batch_size: int | None = None
    input_shape: tuple[int, ...] | None = None
    val_fraction: float = 0.1
    on_done: Callable[[str, Any, int, int], None] | None = None
    _job: tuple[nn.Module, EvalJob] | None = field(default=None, init=False, repr=False)

    @property
    def workers(self) -> int:
        return self.executor.workers

    def measure(self, session: Any, model: nn.Module, plans: list, names: list[str], signal: str) -> list[float]:
        """The score of each plan (as ``Session.measure_plans``), one task per plan.

        Raises:
            ExecutorError: the model was not built from a spec, or the measurement needs a callable
                that cannot travel (a custom ``loss_fn``).
            TaskFailed: a task still failed after its retries.
        """
        job = self._job_for(session, model, signal)
        return self.executor.map(measure_plan, job, [p.to_dict() for p in plans], names, self.on_done)

    def _job_for(self, session: Any, model: nn.Module, signal: str) -> EvalJob:
        from edgeprune.specs import spec_of

        if self._job is not None and self._job[0] is model and self._job[1].signal == signal:
            return self._job[1]  # the same object each round: the executor puts it in its store once
        spec = spec_of(model)
        if spec is None:
            raise ExecutorError(f"measuring on {self.executor.name} workers needs a model built from a spec "
                                "(edgeprune.specs.load_model): the workers rebuild it from the spec and its weights")
        if signal == "loss" and session.loss_fn is not None:
            raise ExecutorError("a custom loss_fn cannot travel to the workers; the loss signal on an executor "
                                "uses cross-entropy")
        if signal == "evaluate" and self.data is None:
            raise ExecutorError("measuring accuracy on workers needs the data spec (--data)")
        calibration = session.calibration() if session.data is not None and (
            session.recalibrate or signal == "loss") else []
        job = EvalJob(spec, {k: v.detach().clone() for k, v in model.state_dict().items()}, self.data,
                      self.evaluate, self.seed, self.batch_size, self.input_shape, self.val_fraction,
                      calibration, session.recalibrate, signal, uuid.uuid4().hex)
        self._job = (model, job)
        return job
