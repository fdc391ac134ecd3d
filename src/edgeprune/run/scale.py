"""A run beyond one process: the recipe's ``executor`` for the strategies' evaluations (and a
latency search on the node that holds the runtime), its ``nproc``/``nnodes`` for the fine-tuning.
The pipeline calls these; ``edgeprune.scale`` does the work."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from edgeprune.run.recipe import RunRecipe

EVALUATING = ("sensitivity", "sensitivity-loss", "guarded")


def open_executor(recipe: RunRecipe) -> Any:
    """The recipe's executor, at the run's thread count (``None`` for ``serial``: everything here).

    Raises:
        ExecutorError: Ray is not installed (with the pip command) or cannot be reached.
    """
    if recipe.executor == "serial":
        return None
    from edgeprune.scale import get_executor

    # a local cluster is this machine: it declares the run's runtime (checked installed before this)
    return get_executor(recipe.executor, threads=recipe.threads, runtimes=tuple(dict.fromkeys(("onnxruntime",
                                                                                               recipe.runtime))))


def evaluator_for(executor: Any, recipe: RunRecipe, on_done: Callable[[str, Any, int, int], None] | None = None) -> Any:
    """An ``edgeprune.scale.Evaluator`` that measures the strategy's candidates on ``executor`` from the
    run's specs, or ``None`` (no executor, or a strategy that measures nothing)."""
    if executor is None or recipe.strategy not in EVALUATING or recipe.kind != "channels":
        return None
    from edgeprune.scale import Evaluator

    return Evaluator(executor, recipe.data, recipe.evaluate, recipe.seed, recipe.batch_size, recipe.input_shape,
                     recipe.val_fraction, on_done=on_done)


def latency_prune_remote(executor: Any, model: nn.Module, example: torch.Tensor, recipe: RunRecipe, budget: Any) -> Any:
    """The latency-aware prune as one task on the node that declares the runtime (``runtime:NAME``):
    the table is built and every candidate timed there, never here.

    Returns:
        An ``edgeprune.PruneResult`` rebuilt here from the task's plans and weights.

    Raises:
        ExecutorError: the executor cannot place work by runtime, or no node declares it.
    """
    from edgeprune.plan import Plan
    from edgeprune.result import PruneResult
    from edgeprune.scale import ExecutorError
    from edgeprune.specs import spec_of
    from edgeprune.surgery import apply_plan

    if not hasattr(executor, "on_runtime"):
        raise ExecutorError(f"the {executor.name} executor cannot place latency measurement on a device")
    if spec_of(model) is None:
        raise ExecutorError("a latency search on a remote node needs a model built from a spec")
    job = {"model": spec_of(model), "seed": recipe.seed, "weights": {k: v.detach().clone() for k, v in
                                                                     model.state_dict().items()},
           "example": example, "targets": list(recipe.target), "runtime": budget.runtime, "threads": budget.threads,
           "precision": budget.precision,
           "criterion": recipe.criterion, "ignore": list(recipe.ignore), "round_to": recipe.round_to,
           "data": recipe.data, "batch_size": recipe.batch_size, "input_shape": recipe.input_shape,
           "val_fraction": recipe.val_fraction}
    got = executor.on_runtime(budget.runtime, _latency_task, job, None)
    plans = [Plan.from_dict(p) for p in got["plans"]]
    pruned = apply_plan(model, plans)
    pruned.load_state_dict(got["weights"])
    return PruneResult(pruned.eval(), plans, skipped=got["skipped"], stats=got["stats"])


def _latency_task(job: dict, _: Any) -> dict:
    """On the runtime's node: rebuild the model from its spec and weights, prune to the latency budget."""
    from edgeprune.api import prune
    from edgeprune.budget import Budget
    from edgeprune.budget.terms import parse_terms
    from edgeprune.run.inputs import build_model, load_data

    model = build_model(job["model"], job["seed"], trained=False)
    model.load_state_dict(job["weights"])
    train = None
    if job["data"]:
        train, _val = load_data(job["data"], seed=job["seed"], batch_size=job["batch_size"], model=model,
                                input_shape=job["input_shape"], val_fraction=job["val_fraction"])
    budget = Budget.from_terms(parse_terms(job["targets"]), runtime=job["runtime"], threads=job["threads"],
                               precision=job.get("precision", "float32"))
    result = prune(model.eval(), job["example"], kind="channels", budget=budget, data=train, seed=job["seed"],
                   criterion=job["criterion"], strategy="latency", ignore=tuple(job["ignore"]),
                   round_to=job["round_to"])
    return {"plans": [p.to_dict() for p in result.plans], "weights": result.model.state_dict(),
            "skipped": dict(result.skipped), "stats": result.stats}


def fine_tune_distributed(pruned: nn.Module, recipe: RunRecipe, teacher: nn.Module, *, baseline: float | None,
                          already: bool = False) -> Any:
    """The run's fine-tuning on ``recipe.nproc x recipe.nnodes`` ranks (``edgeprune.scale.ddp``).

    Returns:
        A ``FinetuneReport`` (``edgeprune.run.finetune``) of rank 0's run.

    Raises:
        DistributedError: a rank died; the run fails and no run directory is written.
    """
    from edgeprune.run.finetune import FinetuneReport
    from edgeprune.scale.ddp import Launch, finetune_distributed
    from edgeprune.specs import spec_of

    launch = Launch(recipe.nproc, recipe.nnodes, recipe.rdzv_endpoint, threads=1)
    epochs = 0 if already else recipe.epochs
    job = {"model": spec_of(teacher) or recipe.model, "seed": recipe.seed, "data": recipe.data,
           "batch_size": recipe.batch_size, "input_shape": recipe.input_shape, "val_fraction": recipe.val_fraction,
           "evaluate": recipe.evaluate, "epochs": epochs, "lr": recipe.lr, "distill": recipe.distill,
           "baseline": baseline, "max_drop": recipe.max_drop if baseline is not None else None,
           "max_epochs": recipe.max_epochs}
    got = finetune_distributed(pruned, launch, job, teacher=teacher if recipe.distill else None)
    return FinetuneReport(got["epochs"] + (recipe.epochs if already else 0), got["steps"], got["seconds"],
                          got["distill"], got["curve"], got["extra_epochs"], got["guard_met"], got["world"],
                          got["rank_max_abs_diff"])
