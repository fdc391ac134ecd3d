"""Whole-model latency on the target, several models measured in interleaved rounds.

The protocol is the runtimes' one (:mod:`edgeprune.runtimes.timing`): in each round every model
gets its warm-up and a few timed runs, model after model (A, B, C, A, B, C, ...), and each model's
figure is its per-round median relative to the first model's in the same round (median over
rounds), times the first model's median. Load that drifts between rounds cancels out of the ratios,
so speed-ups, and a calibration fitted on some models and checked on another, stay comparable even
when a shared machine inflates every absolute figure. This module keeps the ONNX Runtime names the
latency tables and the latency-aware search use.

``spinning`` picks the order: ``True`` (the default) keeps one live session at a time, made afresh
each round, as an idle pool with spinning threads would steal a core from the one timed; ``False``
keeps all sessions alive and alternates single runs between the models. In both, sessions are
opened with the measurement protocol's settings (``edgeprune.measure.latency.ort_session``, idle
threads blocking), as they always were here; the table records its own ``spinning`` setting.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch.nn as nn

from edgeprune.runtimes.timing import Artifact, Measured, measure_interleaved
from edgeprune.runtimes.timing import measure_models as _measure_models
from edgeprune.specs import ExampleInputs

__all__ = ["Measured", "measure_models", "measure_onnx"]


def measure_onnx(paths: Mapping[str, str | os.PathLike], example_inputs: ExampleInputs, *, threads: int = 2,
                 rounds: int = 20, runs: int = 5, warmup: int = 2, spinning: bool = True,
                 stat: str = "median") -> dict[str, Measured]:
    """Latency of several ONNX files with the same inputs, interleaved round by round.

    Args:
        paths: ``{name: onnx path}``; the first is the reference (e.g. the unpruned model).
        example_inputs: the input every model takes (fed as float32 arrays).
        threads: ``intra_op_num_threads``.
        rounds: rounds; each gives every model ``warmup`` untimed and ``runs`` timed runs.
        runs: timed runs per model per round.
        warmup: untimed runs per model per round.
        stat: per-round statistic, ``"median"`` or ``"min"`` (the uncontended time, on a shared machine
            whose load only ever adds time; a model must be short enough to run unpreempted sometimes).
        spinning: the order (see the module docstring); use the table's ``protocol["spinning"]``.

    Returns:
        ``{name: Measured}``.
    """
    artifacts = {name: Artifact("onnxruntime", path, {"spin": False}) for name, path in paths.items()}
    return measure_interleaved(artifacts, example_inputs, threads=threads, rounds=rounds, runs=runs,
                               warmup=warmup, fresh=spinning, stat=stat)


def measure_models(models: Mapping[str, nn.Module], example_inputs: ExampleInputs, *, threads: int = 2,
                   rounds: int = 20, runs: int = 5, warmup: int = 2,
                   folder: str | os.PathLike | None = None, exporter: str = "auto",
                   spinning: bool = True, stat: str = "median") -> dict[str, Measured]:
    """Export each model to ONNX (checked against PyTorch) and measure them with :func:`measure_onnx`.

    Args:
        models: ``{name: model}``.
        folder: keep the ONNX files here (default: a temporary folder, deleted).
        exporter: ``edgeprune.export.onnx.export_onnx``'s exporter ("torchscript" exports faster).
    """
    return _measure_models(models, example_inputs, runtime="onnxruntime", threads=threads, rounds=rounds, runs=runs,
                           warmup=warmup, folder=folder, fresh=spinning, stat=stat,
                           export_options={"exporter": exporter}, open_options={"spin": False})
