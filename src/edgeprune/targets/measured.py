"""Whole-model latency on the target, several models measured in interleaved rounds.

Uses the session and timing protocol of ``edgeprune.measure.latency`` (``ort_session``,
``time_calls``, ``summarize``). What this adds is the order and the figure: in each round every
model gets its warm-up and a few timed runs, model after model (A, B, C, A, B, C, ...), and each
model's figure is its per-round median relative to the first model's in the same round (median over
rounds), times the first model's median. Load that drifts between rounds cancels out of the ratios,
so speed-ups, and a calibration fitted on some models and checked on another, stay comparable even
when a shared machine inflates every absolute figure.

Spinning: with ONNX Runtime's default, idle worker threads spin for a while after each run, and an
idle session would steal a core from the one being timed; so only one session lives at a time (a
fresh one per round). On a machine shared with other work, a spinning thread also waits on a partner
the scheduler has preempted and 2-thread runs take 2-3x their time; ``spinning=False`` (a session
option, recorded in the table's protocol and used for its points too) makes idle threads block.
Then all sessions stay alive and single runs alternate between the models.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeprune.measure.latency import LatencyStats, ort_session, summarize, time_calls
from edgeprune.specs import ExampleInputs, split_inputs
from edgeprune.targets import lut_builder


@dataclass(frozen=True)
class Measured:
    """One model's latency over interleaved rounds.

    Attributes:
        ms: the figure to use: the median over rounds of this model's per-round median divided by the
            reference model's (the first measured) in the same round, times the reference's median.
        rounds: each round's :class:`LatencyStats`.
    """

    ms: float
    rounds: list[LatencyStats] = field(default_factory=list)

    @property
    def spread(self) -> float:
        """Interquartile range of all timed runs over their median: how much the load moved."""
        samples = [s for r in self.rounds for s in r.samples_ms]
        if not samples or not self.ms:
            return 0.0
        q1, q3 = np.percentile(samples, [25, 75])
        return float((q3 - q1) / self.ms)


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
        spinning: ONNX Runtime's default (idle worker threads spin). ``False`` makes them block; then
            all sessions stay alive and single runs alternate between models. Use the table's
            setting (``table.protocol["spinning"]``).

    Returns:
        ``{name: Measured}``.
    """
    from edgeprune.export.onnx import onnx_feeds

    args, kwargs = split_inputs(example_inputs)
    batch = int(args[0].shape[0]) if args else 1
    samples: dict[str, list[list[float]]] = {name: [] for name in paths}
    for _ in range(rounds):
        if spinning:  # one live session at a time, made afresh each round (an idle pool would spin)
            for name, path in paths.items():
                sess = ort_session(path, threads)
                feeds = onnx_feeds(sess, args, kwargs)
                samples[name].append(time_calls(lambda: sess.run(None, feeds), runs=runs, warmup=warmup))
                del sess
            continue
        live = {}
        for name, path in paths.items():
            sess = lut_builder.session(str(path), threads, spinning=False)
            live[name] = (sess, onnx_feeds(sess, args, kwargs))
            time_calls(lambda s=sess, f=live[name][1]: s.run(None, f), runs=1, warmup=warmup)
        got: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(runs):  # single runs alternate: A, B, C, A, B, C, ...
            for name, (sess, feeds) in live.items():
                got[name] += time_calls(lambda s=sess, f=feeds: s.run(None, f), runs=1, warmup=0)
        del live
        for name in paths:
            samples[name].append(got[name])
    per = {name: [summarize(r, runtime="onnxruntime", warmup=warmup, threads=threads, batch_size=batch)
                  for r in rs] for name, rs in samples.items()}
    # each model relative to the first (the reference) within the same round, then the median over
    # rounds: load that moves between rounds cancels out of the ratios
    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    pick = (lambda r: r.median_ms) if stat == "median" else (lambda r: r.min_ms)
    ref = next(iter(paths))
    ref_ms = float(np.median([pick(r) for r in per[ref]]))
    return {name: Measured(ref_ms * float(np.median([pick(r) / pick(q) for r, q in zip(rs, per[ref])])), rs)
            for name, rs in per.items()}


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
    from edgeprune.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgeprune-measure-") as tmp:
        base = Path(folder) if folder is not None else Path(tmp)
        paths = {}
        for name, model in models.items():
            paths[name] = export_onnx(model, example_inputs, base / f"{_safe(name)}.onnx", exporter=exporter)
        with torch.no_grad():
            return measure_onnx(paths, example_inputs, threads=threads, rounds=rounds, runs=runs, warmup=warmup,
                                spinning=spinning, stat=stat)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
