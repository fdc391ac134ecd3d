"""One timing protocol for every runtime: several artifacts measured interleaved in one process.

In each round every artifact gets ``warmup`` untimed runs and ``runs`` timed runs (each call timed
alone with ``time.perf_counter_ns``, see :func:`edgeprune.measure.latency.time_calls`), artifact
after artifact (A, B, C, A, B, C, ...). Each artifact's figure is its per-round median relative to
the first artifact's in the same round (median over rounds), times the first artifact's median:
load that drifts between rounds cancels out of the ratios, so speed-ups stay comparable when a
shared machine inflates every absolute figure.

Two orders (``fresh``):

- ``fresh=False`` (default): every session stays open; after the warm-ups, single runs alternate
  between the artifacts (A, B, A, B, ...) ``runs`` times per round.
- ``fresh=True``: one session lives at a time, opened afresh each round, and gets its runs in a
  block. Needed where an idle session steals a core from the one timed (ONNX Runtime with spinning
  worker threads, its default).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.runtimes.registry import get_runtime
from edgeprune.specs import ExampleInputs, split_inputs

if TYPE_CHECKING:  # measure/ imports the exporter, which imports this package's errors
    from edgeprune.measure.latency import LatencyStats


@dataclass(frozen=True)
class Artifact:
    """A file to time on a runtime, with the runtime's open options (e.g. ``{"spin": True}``) and,
    where it takes a different input than the others, its own ``inputs``."""

    runtime: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    inputs: Any = None


@dataclass(frozen=True)
class Measured:
    """One artifact's latency over interleaved rounds.

    Attributes:
        ms: the figure to use: the median over rounds of this artifact's per-round median divided by the
            reference's (the first measured) in the same round, times the reference's median.
        rounds: each round's :class:`LatencyStats`.
        runtime / version / threads / precision: what ran it (shown beside every figure).
    """

    ms: float
    rounds: list[LatencyStats] = field(default_factory=list)
    runtime: str = "onnxruntime"
    version: str = ""
    threads: int | None = None
    precision: str = "f32"

    @property
    def spread(self) -> float:
        """Interquartile range of all timed runs over their median: how much the load moved."""
        samples = [s for r in self.rounds for s in r.samples_ms]
        if not samples or not self.ms:
            return 0.0
        q1, q3 = np.percentile(samples, [25, 75])
        return float((q3 - q1) / self.ms)

    def to_dict(self) -> dict[str, Any]:
        """The figure and what ran it (without the per-round samples)."""
        return {"ms": self.ms, "runtime": self.runtime, "version": self.version, "threads": self.threads,
                "precision": self.precision, "rounds": len(self.rounds), "spread": round(self.spread, 4)}


def measure_interleaved(artifacts: Mapping[str, Artifact], example_inputs: ExampleInputs, *, threads: int = 2,
                        rounds: int = 20, runs: int = 5, warmup: int = 2, fresh: bool = False,
                        stat: str = "median") -> dict[str, Measured]:
    """Latency of several artifacts (any mix of runtimes) with the same inputs, interleaved.

    Args:
        artifacts: ``{name: Artifact}``; the first is the reference (e.g. the unpruned model).
        example_inputs: the input every artifact takes.
        threads: worker threads of every session.
        rounds: rounds; each gives every artifact ``warmup`` untimed and ``runs`` timed runs.
        runs: timed runs per artifact per round.
        warmup: untimed runs per artifact per round.
        fresh: one live session at a time, opened afresh each round (see the module docstring).
        stat: per-round statistic, ``"median"`` or ``"min"`` (the uncontended time on a machine whose
            load only ever adds time).

    Returns:
        ``{name: Measured}``.

    Example:
        >>> from edgeprune.runtimes import Artifact, measure_interleaved  # doctest: +SKIP
        >>> got = measure_interleaved({"dense": Artifact("onnxruntime", "a.onnx"),
        ...                            "pruned": Artifact("litert", "b.tflite")}, x, threads=2)  # doctest: +SKIP
    """
    from edgeprune.measure.latency import summarize, time_calls

    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    if not artifacts:
        raise ValueError("nothing to measure")
    args, kwargs = split_inputs(example_inputs)
    batch = int(args[0].shape[0]) if args and args[0].dim() else 1
    samples: dict[str, list[list[float]]] = {name: [] for name in artifacts}
    info: dict[str, dict[str, Any]] = {}

    def open_one(a: Artifact):
        session = get_runtime(a.runtime).open(a.path, threads, **a.options)
        own = split_inputs(a.inputs) if a.inputs is not None else (args, kwargs)
        return session, session.caller(session.inputs_from(*own))

    for _ in range(rounds):
        if fresh:
            for name, a in artifacts.items():
                session, call = open_one(a)
                info[name] = session.describe()
                samples[name].append(time_calls(call, runs=runs, warmup=warmup))
                del session, call
            continue
        live = {}
        for name, a in artifacts.items():
            session, call = open_one(a)
            info[name] = session.describe()
            live[name] = (session, call)
            time_calls(call, runs=1, warmup=warmup)
        got: dict[str, list[float]] = {name: [] for name in artifacts}
        for _ in range(runs):  # single runs alternate: A, B, C, A, B, C, ...
            for name, (_, call) in live.items():
                got[name] += time_calls(call, runs=1, warmup=0)
        del live
        for name in artifacts:
            samples[name].append(got[name])
    per = {name: [summarize(r, runtime=artifacts[name].runtime, warmup=warmup, threads=threads, batch_size=batch)
                  for r in rs] for name, rs in samples.items()}
    pick = (lambda r: r.median_ms) if stat == "median" else (lambda r: r.min_ms)
    ref = next(iter(artifacts))
    ref_ms = float(np.median([pick(r) for r in per[ref]]))
    return {name: Measured(ref_ms * float(np.median([pick(r) / pick(q) for r, q in zip(rs, per[ref])])), rs,
                           runtime=info[name]["runtime"], version=info[name]["version"],
                           threads=info[name]["threads"], precision=info[name]["precision"])
            for name, rs in per.items()}


def measure_models(models: Mapping[str, nn.Module], example_inputs: ExampleInputs, *,
                   runtime: str = "onnxruntime", threads: int = 2, rounds: int = 20, runs: int = 5, warmup: int = 2,
                   folder: str | os.PathLike | None = None, fresh: bool = False, stat: str = "median",
                   export_options: Mapping[str, Any] | None = None,
                   open_options: Mapping[str, Any] | None = None, precision: str = "float32") -> dict[str, Measured]:
    """Export each model to ``runtime``'s file (checked against PyTorch) and time them interleaved.

    With ``precision="int8"`` each file is the model's INT8 file, made by the quantizer a
    ``--quantize int8`` run uses on ``runtime`` (:func:`edgeprune.quantize.files.quantize_model`),
    calibrated on random batches: the calibration moves the values, not the time.

    Args:
        models: ``{name: model}``; the first is the reference.
        example_inputs: their input.
        runtime: the runtime's registry name.
        folder: keep the artifacts here (default: a temporary folder, deleted).
        export_options: passed to the runtime's ``export`` (ONNX Runtime: ``exporter=...``).
        open_options: passed to its ``open`` (ONNX Runtime: ``spin=...``).
        precision: ``"float32"`` (the runtime's FP32 file) or ``"int8"``.
        threads, rounds, runs, warmup, fresh, stat: as in :func:`measure_interleaved`.

    Returns:
        ``{name: Measured}``.
    """
    if precision not in ("float32", "int8"):
        raise ValueError(f"precision must be 'float32' or 'int8', got {precision!r}")
    rt = get_runtime(runtime)
    with tempfile.TemporaryDirectory(prefix="edgeprune-measure-") as tmp:
        base = Path(folder) if folder is not None else Path(tmp)
        artifacts = {}
        for name, model in models.items():
            path = export_artifact(rt.name, model, example_inputs, base, _safe(name), precision,
                                   **dict(export_options or {}))
            artifacts[name] = Artifact(rt.name, path, dict(open_options or {}))
        with torch.no_grad():
            return measure_interleaved(artifacts, example_inputs, threads=threads, rounds=rounds, runs=runs,
                                       warmup=warmup, fresh=fresh, stat=stat)


def export_artifact(runtime: str, model: nn.Module, example_inputs: ExampleInputs, folder: str | os.PathLike,
                    stem: str, precision: str = "float32", **export_options: Any) -> Path:
    """``model``'s file for ``runtime`` in ``folder``: its FP32 artifact (``stem`` + the runtime's suffix),
    or with ``precision="int8"`` its INT8 file (``stem.int8`` + suffix; random calibration, see
    :mod:`edgeprune.quantize.files`)."""
    rt = get_runtime(runtime)
    if precision != "int8":
        return rt.export(model, example_inputs, rt.artifact_path(folder, stem), **export_options)
    from edgeprune.quantize.files import quantize_model, synthetic_batches

    args, kwargs = split_inputs(example_inputs)
    if kwargs or len(args) != 1:
        raise ValueError("an INT8 file is made for a model with one tensor input")
    return Path(quantize_model(rt.name, model, args[0], rt.artifact_path(folder, f"{stem}.int8"),
                               synthetic_batches(args[0]), exporter=export_options.get("exporter", "auto"),
                               check=False).path)  # timed, never deployed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
