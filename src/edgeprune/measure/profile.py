"""The Profile: every measurement of one model on one input, comparable side by side."""
from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from edgeprune.export.onnx import Exporter
from edgeprune.measure.latency import LatencyStats, ort_latency, torch_latency
from edgeprune.measure.macs import MacCount, count_macs
from edgeprune.measure.memory import MemoryReport, measure_memory
from edgeprune.measure.params import ParamCount, count_params, is_masked
from edgeprune.measure.size import SizeReport, SparseExporter, file_sizes
from edgeprune.specs import ExampleInputs, eval_mode, random_inputs, spec_of

PROFILE_FORMAT = "edgeprune.profile"
PROFILE_VERSION = 1
SPARSE_NOTE_THRESHOLD = 0.01  # freshly initialised models have a few zeros (BatchNorm biases)
SPARSE_NOTE = ("sparse model: latency is measured as it runs (dense kernels multiply the zeros); "
               "no speedup is derived from sparsity")


@dataclass
class Profile:
    """Measurements of one model on one input and target.

    All figures are for the input of ``input_shapes`` (batch ``batch_size``); MACs scale with it.
    A masked model reports its ``params.nonzero`` and file sizes, but only its measured latency.

    Attributes:
        name: the model's spec, or its class name.
        input_shapes: shape of each input tensor.
        batch_size: dimension 0 of the inputs.
        params: total and nonzero parameter counts.
        macs: multiply-accumulates of one forward pass, by kind.
        sizes: state dict, ONNX, zipped ONNX and sparse ONNX bytes.
        latency_onnx: ONNX Runtime latency, or ``None`` when not measured.
        latency_torch: PyTorch eager latency, or ``None`` when not measured.
        latency_runtime: latency of the artifact of another runtime (``profile(runtime=...)``: LiteRT,
            ExecuTorch, OpenVINO), with its version, threads and precision; ``None`` otherwise.
        memory: peak memory of one inference (PyTorch eager), or ``None``.
        notes: caveats a reader must see (e.g. sparsity that brings no speed).
        environment: versions and machine the numbers come from.
    """

    name: str
    input_shapes: list[list[int]]
    batch_size: int
    params: ParamCount
    macs: MacCount
    sizes: SizeReport
    latency_onnx: LatencyStats | None = None
    latency_torch: LatencyStats | None = None
    memory: MemoryReport | None = None
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    latency_runtime: LatencyStats | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps`` takes it as is)."""
        data = asdict(self)
        data["params"]["sparsity"] = self.params.sparsity
        if self.memory is not None:
            data["memory"]["peak_bytes"] = self.memory.peak_bytes
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a profile from :meth:`to_dict`'s output."""
        if data.get("format") != PROFILE_FORMAT or data.get("version") != PROFILE_VERSION:
            raise ValueError("not an edgeprune profile of a supported version")
        params = {k: v for k, v in data["params"].items() if k != "sparsity"}
        memory = data.get("memory")
        return cls(name=data["name"], input_shapes=[list(s) for s in data["input_shapes"]],
                   batch_size=data["batch_size"], params=ParamCount(**params), macs=MacCount(**data["macs"]),
                   sizes=SizeReport(**data["sizes"]),
                   latency_onnx=LatencyStats(**data["latency_onnx"]) if data.get("latency_onnx") else None,
                   latency_torch=LatencyStats(**data["latency_torch"]) if data.get("latency_torch") else None,
                   memory=MemoryReport(**{k: v for k, v in memory.items() if k != "peak_bytes"}) if memory else None,
                   notes=list(data.get("notes", [])), environment=dict(data.get("environment", {})),
                   latency_runtime=LatencyStats(**data["latency_runtime"]) if data.get("latency_runtime") else None)


def profile(model: nn.Module, example_inputs: ExampleInputs, *, threads: int = 2, batch_size: int = 1,
            latency: bool = True, torch_latency_too: bool = True, runs: int = 50, warmup: int = 10,
            memory: bool = True, memory_method: Literal["allocator", "tensors"] = "allocator",
            onnx: bool = True, check_onnx: bool = True, onnx_path: str | os.PathLike | None = None,
            sparse_exporter: SparseExporter | None = None, seed: int = 0, name: str | None = None,
            ort_spin: bool = False, exporter: Exporter = "auto", runtime: str = "onnxruntime") -> Profile:
    """Measure a model: parameters, MACs, bytes, latency (ONNX Runtime and PyTorch), peak memory.

    Every measurement uses one fixed-seed input shaped like ``example_inputs`` with batch
    ``batch_size``. The model is measured in eval mode; its train/eval flags are restored.

    Args:
        model: the model to measure.
        example_inputs: a tensor, tuple or dict of tensors giving the input shapes and dtypes.
        threads: intra-op threads for both runtimes.
        batch_size: batch size of the measured input.
        latency: measure latency at all.
        torch_latency_too: also measure PyTorch eager latency (for comparison).
        runs: timed runs per latency measurement.
        warmup: untimed runs before them.
        memory: measure peak memory.
        memory_method: ``"allocator"`` or ``"tensors"`` (see :mod:`edgeprune.measure.memory`).
        onnx: export to ONNX (needed for ONNX sizes and ONNX Runtime latency).
        check_onnx: check the exported file against PyTorch before timing it.
        onnx_path: keep the dense ONNX file here (default: a temporary file, deleted).
        sparse_exporter: ``f(dense_path, sparse_path)``; fills ``sizes.sparse_onnx_bytes``.
        seed: seed of the measured input.
        name: label of the model (default: its spec, else its class name).
        ort_spin: let ONNX Runtime's idle threads busy-wait (see :mod:`edgeprune.measure.latency`).
        exporter: ONNX exporter (see :func:`edgeprune.export.onnx.export_onnx`); ``"torchscript"``
            exports 3-4x faster where many profiles are taken.
        runtime: also export the model to this runtime's artifact (checked against PyTorch) and time it
            (``latency_runtime``): ``litert``, ``executorch`` or ``openvino``; ONNX Runtime is always timed.

    Returns:
        A :class:`Profile`.

    Example:
        >>> p = profile(nn.Linear(16, 4), torch.randn(1, 16), runs=5, warmup=1)
        >>> p.params.total, p.macs.total
        (68, 64)
    """
    from edgeprune.export.onnx import export_onnx
    from edgeprune.runtimes import get_runtime

    rt = get_runtime(runtime)
    if rt.name != "onnxruntime":
        rt.require()  # before any work: a missing extra is named at once
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    args, kwargs = random_inputs(example_inputs, seed=seed, batch_size=batch_size)
    inputs: ExampleInputs = kwargs if kwargs else args
    notes: list[str] = []
    with eval_mode(model), tempfile.TemporaryDirectory(prefix="edgeprune-profile-") as tmp:
        params = count_params(model)
        if params.sparsity >= SPARSE_NOTE_THRESHOLD or is_masked(model):
            notes.append(SPARSE_NOTE)
        macs = count_macs(model, inputs)
        path: Path | None = None
        if onnx:
            path = Path(onnx_path) if onnx_path is not None else Path(tmp) / "model.onnx"
            export_onnx(model, inputs, path, check=check_onnx, exporter=exporter)
        sizes = file_sizes(model, path, sparse_exporter)
        lat_onnx = lat_torch = None
        if latency and path is not None:
            lat_onnx = ort_latency(path, args, kwargs, threads=threads, runs=runs, warmup=warmup, spin=ort_spin)
        lat_rt = None
        if latency and rt.name != "onnxruntime":
            lat_rt = runtime_latency(rt.name, model, inputs, Path(tmp), threads=threads, runs=runs, warmup=warmup,
                                     onnx_path=path)
        if latency and torch_latency_too:
            lat_torch = torch_latency(model, args, kwargs, threads=threads, runs=runs, warmup=warmup)
        mem = measure_memory(model, inputs, memory_method) if memory else None
    shapes = [list(t.shape) for t in list(args) + list(kwargs.values())]
    return Profile(name=name or spec_of(model) or type(model).__name__, input_shapes=shapes, batch_size=batch_size,
                   params=params, macs=macs, sizes=sizes, latency_onnx=lat_onnx, latency_torch=lat_torch,
                   memory=mem, notes=notes, environment=environment(threads, ort_spin), latency_runtime=lat_rt)


def runtime_latency(runtime: str, model: nn.Module, example_inputs: ExampleInputs, folder: Path, *, threads: int,
                    runs: int, warmup: int, onnx_path: Path | None = None) -> LatencyStats:
    """Export ``model`` to ``runtime``'s artifact in ``folder`` (checked) and time it (one artifact).

    Returns:
        :class:`LatencyStats` with the runtime's name, version and precision.
    """
    from edgeprune.measure.latency import summarize, time_calls
    from edgeprune.runtimes import get_runtime
    from edgeprune.specs import split_inputs

    rt = get_runtime(runtime)
    options = {"onnx": onnx_path} if rt.name == "openvino" and onnx_path is not None else {}
    path = rt.export(model, example_inputs, rt.artifact_path(folder, "model"), **options)
    session = rt.open(path, threads)
    args, kwargs = split_inputs(example_inputs)
    samples = time_calls(session.caller(session.inputs_from(args, kwargs)), runs=runs, warmup=warmup)
    first = (list(args) + list(kwargs.values()))[0]
    return summarize(samples, runtime=rt.name, warmup=warmup, threads=threads,
                     batch_size=int(first.shape[0]) if first.dim() else 1, version=session.version,
                     precision=session.precision)


def environment(threads: int, ort_spin: bool = False) -> dict[str, Any]:
    """Versions and machine facts that a latency figure depends on."""
    try:
        import onnxruntime as ort
        ort_version = ort.__version__
    except ImportError:  # pragma: no cover - a dependency, but report rather than fail
        ort_version = None
    return {"torch": torch.__version__, "onnxruntime": ort_version, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": threads, "ort_spinning": ort_spin,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
