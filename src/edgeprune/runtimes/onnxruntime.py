"""ONNX Runtime (CPU execution provider): the core runtime, and the one every table is built on.

Session settings (the measurement protocol of :mod:`edgeprune.measure.latency`):
``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``, ``ORT_SEQUENTIAL``,
``ORT_ENABLE_ALL``, and intra-op spinning off unless ``spin=True``. ``threads=None`` (parity
checks) leaves ORT's defaults. The device-side table builder
(``edgeprune.targets.lut_builder.session_options``) repeats these settings because it must run
without edgeprune installed; a test keeps the two equal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.runtimes.base import Inputs, Runtime, Session
from edgeprune.runtimes.errors import ExportError
from edgeprune.runtimes.parity import FP32, Tolerance


def session_options(threads: int | None, spin: bool = False):
    """The ``onnxruntime.SessionOptions`` of the measurement protocol (see the module docstring)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is None:
        return opts
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


class OnnxRuntimeSession(Session):
    """An ``onnxruntime.InferenceSession`` (``.ort``) behind the :class:`Session` interface."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None, spin: bool = False) -> None:
        import onnxruntime as ort

        self.path, self.threads, self.version, self.spin = path, threads, ort.__version__, spin
        self.ort = ort.InferenceSession(str(path), sess_options=session_options(threads, spin),
                                        providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.ort.get_inputs()]
        self.output_names = [o.name for o in self.ort.get_outputs()]

    def inputs_from(self, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return feeds(self.input_names, args, kwargs)

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        feeds = inputs if isinstance(inputs, dict) else dict(zip(self.input_names, inputs))
        return self.ort.run(None, feeds)

    def caller(self, inputs: Inputs):
        feeds = inputs if isinstance(inputs, dict) else dict(zip(self.input_names, inputs))
        run = self.ort.run
        return lambda: run(None, feeds)


class OnnxRuntime(Runtime):
    """ONNX Runtime: ``.onnx`` files written by :func:`edgeprune.export.onnx.export_onnx`."""

    name, format, suffix, extra = "onnxruntime", "onnx", ".onnx", None
    packages, distribution = ("onnxruntime",), "onnxruntime"

    def export(self, model: nn.Module, example_inputs, path, *, check: bool = True, tol: Tolerance = FP32,
               seed: int = 0, **options: Any) -> Path:
        """:func:`edgeprune.export.onnx.export_onnx` (``options``: ``exporter``, ``dynamic_batch``, ...)."""
        from edgeprune.export.onnx import export_onnx

        return export_onnx(model, example_inputs, path, check=check, rtol=tol.rtol, atol=tol.atol, seed=seed,
                           **options)

    def _write(self, model, args, kwargs, path) -> None:  # pragma: no cover - export is overridden
        raise NotImplementedError

    def _open(self, path: Path, threads: int | None, spin: bool = False) -> Session:
        try:
            return OnnxRuntimeSession(path, threads, spin)
        except Exception as exc:
            raise ExportError(f"ONNX Runtime cannot load {path}: {exc}") from exc


def feeds(names: list[str], args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``{graph input name: array}``: by name when the graph's inputs are the keyword names, else by position.

    Raises:
        ExportError: the graph has a different number of inputs than the model was given.
    """
    if kwargs and not args and set(names) <= set(kwargs):
        return {n: _numpy(kwargs[n]) for n in names}
    flat = list(args) + list(kwargs.values())
    if len(names) != len(flat):
        raise ExportError(f"the ONNX graph has {len(names)} inputs {names} but the model was given {len(flat)}; "
                          "an input the model ignores is dropped by the exporter")
    return {n: _numpy(t) for n, t in zip(names, flat)}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()
