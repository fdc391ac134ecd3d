"""Latency of one inference, on ONNX Runtime and in PyTorch eager, by one protocol.

(Several artifacts on any runtime, interleaved in one process: ``edgeprune.runtimes.timing``, which
times each call with :func:`time_calls` and summarises with :func:`summarize` as here.)

Protocol (both runtimes): fixed-seed input; ``warmup`` untimed runs (first-run allocations,
kernel selection, caches); then ``runs`` timed runs one after another, each timed alone with
``time.perf_counter_ns`` around the single call; we report the median (robust to the odd
preempted run) and the 95th percentile (how bad a slow run gets), plus mean and min.

ONNX Runtime session: CPU execution provider, ``intra_op_num_threads = threads``,
``inter_op_num_threads = 1``, ``execution_mode = ORT_SEQUENTIAL`` (ops one at a time, each using the
intra-op pool), ``graph_optimization_level = ORT_ENABLE_ALL``, and intra-op thread spinning off
(``session.intra_op.allow_spinning = 0``) unless ``spin=True``. Spinning (ORT's default) makes idle
pool threads busy-wait for the next op: on a quiet machine it saves a little wake-up time, but when
the cores are shared it steals them from the threads doing the work. On the 2-core development
machine under load, resnet18 medians were 129/145/156 ms with spinning and 91/91/83 ms without.
Many edge deployments turn it off too, to save power. PyTorch: ``torch.set_num_threads(threads)`` for the measurement,
restored afterwards, and ``torch.inference_mode``.

A masked model runs dense kernels on zeros: its latency is measured like any other and never
derived from its sparsity.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one model on one runtime, in milliseconds.

    Attributes:
        runtime: ``"onnxruntime"`` or ``"torch"``.
        median_ms: median of the timed runs.
        p95_ms: 95th percentile (linear interpolation) of the timed runs.
        mean_ms: mean of the timed runs.
        min_ms: fastest timed run.
        runs: number of timed runs.
        warmup: number of untimed runs before them.
        threads: intra-op threads used.
        batch_size: batch size of the input.
        samples_ms: every timed run, in order.
        version: the runtime's version.
        precision: what its kernels computed in (``f32`` unless a runtime reports otherwise).
    """

    runtime: str
    median_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    threads: int
    batch_size: int
    samples_ms: list[float] = field(default_factory=list)
    version: str = ""
    precision: str = "f32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_calls(call: Callable[[], object], *, runs: int, warmup: int) -> list[float]:
    """Run ``call`` ``warmup`` times untimed, then ``runs`` times timed one by one.

    Args:
        call: the function to time (no arguments).
        runs: timed runs (>= 1).
        warmup: untimed runs first (>= 0).

    Returns:
        The ``runs`` durations in milliseconds, in order.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summarize(samples_ms: list[float], *, runtime: str, warmup: int, threads: int, batch_size: int,
              version: str = "", precision: str = "f32") -> LatencyStats:
    """Summarise timed runs.

    Args:
        samples_ms: the timed runs in milliseconds.
        runtime: ``"onnxruntime"`` or ``"torch"``.
        warmup: untimed runs that preceded them.
        threads: intra-op threads used.
        batch_size: batch size of the input.
        version: the runtime's version.
        precision: what its kernels computed in.

    Returns:
        :class:`LatencyStats` (median, p95 by linear interpolation, mean, min, the samples).
    """
    arr = np.asarray(samples_ms, dtype=np.float64)
    return LatencyStats(runtime=runtime, median_ms=float(np.median(arr)), p95_ms=float(np.percentile(arr, 95)),
                        mean_ms=float(arr.mean()), min_ms=float(arr.min()), runs=len(samples_ms),
                        warmup=warmup, threads=threads, batch_size=batch_size,
                        samples_ms=[round(float(x), 4) for x in samples_ms], version=version, precision=precision)


def ort_session(onnx_path: str | os.PathLike, threads: int, spin: bool = False):
    """An ONNX Runtime CPU session with the measurement settings of this module's docstring.

    Made by the ONNX Runtime plug-in (``edgeprune.runtimes.onnxruntime``), the one session factory.

    Args:
        onnx_path: the model file.
        threads: ``intra_op_num_threads``.
        spin: let idle intra-op threads busy-wait (ORT's default; off here, see above).

    Returns:
        An ``onnxruntime.InferenceSession``.
    """
    from edgeprune.runtimes import open_session

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return open_session("onnxruntime", onnx_path, threads, spin=spin).ort


def ort_latency(onnx_path: str | os.PathLike, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
                *, threads: int = 2, runs: int = 50, warmup: int = 10, spin: bool = False) -> LatencyStats:
    """Measure an ONNX file's latency on ONNX Runtime (CPU).

    Args:
        onnx_path: the model file.
        args: positional inputs (as for the PyTorch model).
        kwargs: keyword inputs.
        threads: ``intra_op_num_threads``.
        runs: timed runs.
        warmup: untimed runs first.
        spin: intra-op thread spinning (see the module docstring).

    Returns:
        :class:`LatencyStats` with ``runtime="onnxruntime"``.

    Example:
        >>> stats = ort_latency("model.onnx", (torch.randn(1, 3, 224, 224),), {}, threads=2)  # doctest: +SKIP
    """
    from edgeprune.export.onnx import onnx_feeds

    import onnxruntime as ort

    session = ort_session(onnx_path, threads, spin)
    feeds = onnx_feeds(session, args, kwargs)
    samples = time_calls(lambda: session.run(None, feeds), runs=runs, warmup=warmup)
    return summarize(samples, runtime="onnxruntime", warmup=warmup, threads=threads, batch_size=_batch(args, kwargs),
                     version=ort.__version__)


def torch_latency(model: nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
                  *, threads: int = 2, runs: int = 50, warmup: int = 10) -> LatencyStats:
    """Measure a model's latency in PyTorch eager on CPU (same protocol as :func:`ort_latency`).

    ``torch.set_num_threads(threads)`` holds during the measurement and the previous value is
    restored afterwards, also on error.

    Args:
        model: the model, run as it is (put it in eval mode first).
        args: positional inputs.
        kwargs: keyword inputs.
        threads: intra-op threads.
        runs: timed runs.
        warmup: untimed runs first.

    Returns:
        :class:`LatencyStats` with ``runtime="torch"``.

    Example:
        >>> torch_latency(nn.Linear(8, 8), (torch.randn(1, 8),), {}, runs=5, warmup=1).runs
        5
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            samples = time_calls(lambda: model(*args, **kwargs), runs=runs, warmup=warmup)
    finally:
        torch.set_num_threads(previous)
    return summarize(samples, runtime="torch", warmup=warmup, threads=threads, batch_size=_batch(args, kwargs),
                     version=torch.__version__)


def _batch(args, kwargs) -> int:
    first = next(iter(list(args) + list(kwargs.values())))
    return int(first.shape[0]) if first.dim() else 1
