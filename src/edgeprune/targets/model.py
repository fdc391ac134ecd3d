"""The one place a latency budget gets its latency model: a table of the model's layers measured
on the budget's runtime at its thread count, summed by a :class:`LatencyPredictor`."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from edgeprune.errors import BudgetError
from edgeprune.targets import lut_builder
from edgeprune.targets.build import TableConfig, build_table
from edgeprune.targets.predictor import LatencyPredictor

TABLE_RUNTIMES = lut_builder.RUNTIMES


def latency_model(model: nn.Module, example_inputs: Any, runtime: str = "onnxruntime", threads: int = 2,
                  precision: str = "float32") -> LatencyPredictor:
    """A latency predictor for ``model`` on ``runtime`` (its layers timed there, at ``threads``, with
    ``precision``'s kernels: ``"int8"`` when the run deploys an INT8 file).

    Raises:
        BudgetError: no latency table can be measured on ``runtime``.
        RuntimeMissingError: the runtime's extra is not installed.
    """
    if runtime not in TABLE_RUNTIMES:
        raise BudgetError(f"latency tables are measured on {', '.join(TABLE_RUNTIMES)}; a latency budget on "
                          f"{runtime!r} is not supported")
    from edgeprune.runtimes import get_runtime

    get_runtime(runtime).require()
    from edgeprune.targets.table import TableError

    try:
        config = TableConfig(runtime=runtime, threads=threads, precision=precision)
    except TableError as exc:
        raise BudgetError(str(exc)) from None
    return LatencyPredictor(build_table(model, example_inputs, config))
