"""OpenVINO (CPU plug-in): IR files ``model.xml`` + ``model.bin``.

Export: ``openvino.convert_model(model, example_input=...)`` (its PyTorch frontend), or from the
model's checked ONNX file when one is given (``onnx=path``: ~10x faster to convert, and the same
graph ONNX Runtime runs), then ``save_model(..., compress_to_fp16=False)`` (the default would store
FP16 weights). Either way the IR is checked against the PyTorch model. Compile on ``"CPU"`` with
``INFERENCE_PRECISION_HINT`` (``f32`` by default here: on CPUs with AVX-512 BF16 OpenVINO's own
default is bf16, off by up to 5e-2 from PyTorch), ``INFERENCE_NUM_THREADS``, ``NUM_STREAMS: 1``
and ``PERFORMANCE_HINT: LATENCY``. The session's ``precision`` is what the compiled model
reports, so a latency figure says which precision was timed.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from edgeprune.runtimes.base import Inputs, Runtime, Session
from edgeprune.runtimes.errors import ExportError

_PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "default": None}


class OpenVINOSession(Session):
    """A compiled OpenVINO model and one infer request behind the :class:`Session` interface."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int | None, version: str, precision: str | None) -> None:
        import openvino as ov

        self.path, self.threads, self.version = path, threads, version
        config = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = ov.Core().compile_model(str(path), "CPU", config=config)
        self.precision = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.request = self.compiled.create_infer_request()
        self.input_names = [_name(p, f"input_{i}") for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [_name(p, f"output_{i}") for i, p in enumerate(self.compiled.outputs)]

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        self.request.infer([np.ascontiguousarray(a) for a in arrays])
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]

    def caller(self, inputs: Inputs):
        arrays = [np.ascontiguousarray(a) for a in (list(inputs.values()) if isinstance(inputs, dict) else inputs)]
        infer = self.request.infer
        return lambda: infer(arrays)


class OpenVINO(Runtime):
    """OpenVINO's CPU plug-in."""

    name, format, suffix, extra = "openvino", "openvino", ".xml", "openvino"
    packages, distribution = ("openvino",), "openvino"

    def companions(self, path: Path) -> list[Path]:
        return [path.with_suffix(".bin")]

    def _write(self, model, args, kwargs, path: Path, onnx: str | Path | None = None) -> None:
        """``onnx``: convert from the model's checked ONNX file instead of the PyTorch module."""
        import openvino as ov

        if kwargs and args:
            raise ExportError("OpenVINO export takes positional or keyword inputs, not both")
        example = dict(kwargs) if kwargs else tuple(args)
        source = Path(onnx) if onnx is not None else None
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            converted = ov.convert_model(str(source)) if source else ov.convert_model(model, example_input=example)
            ov.save_model(converted, str(path), compress_to_fp16=False)

    def _open(self, path: Path, threads: int | None, precision: str = "f32") -> Session:
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}")
        if not path.with_suffix(".bin").exists():
            raise ExportError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
        return OpenVINOSession(path, threads, self.version, _PRECISIONS[precision])


def _type_name(t) -> str:
    try:
        return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(t.get_type_name(), t.get_type_name())
    except AttributeError:
        return str(t)


def _name(port, default: str) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # a tensor without names
        return default
