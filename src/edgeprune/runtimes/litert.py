"""LiteRT (formerly TensorFlow Lite), XNNPACK on CPUs: ``.tflite`` files.

Converter: ``litert_torch.convert(model, args).export(path)`` (package ``litert-torch``, no
TensorFlow needed); it takes positional inputs only. Interpreter: ``ai_edge_litert`` 's
``Interpreter(model_path, num_threads)``; inputs and outputs follow the ``serving_default``
signature (``args_0, args_1, ...`` / ``output_0, ...``), so the order matches PyTorch's.
An FP32 graph keeps BatchNorm of Conv1d models as MUL + ADD (not folded).
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np

from edgeprune.runtimes.base import Inputs, Runtime, Session
from edgeprune.runtimes.errors import ExportError


class LiteRTSession(Session):
    """An ``ai_edge_litert`` interpreter behind the :class:`Session` interface."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int | None, version: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.threads, self.version = path, threads, version
        kw = {"num_threads": threads} if threads is not None else {}
        self.interp = Interpreter(model_path=str(path), **kw)
        self.interp.allocate_tensors()
        inputs = {d["name"]: d for d in self.interp.get_input_details()}
        outputs = {d["name"]: d for d in self.interp.get_output_details()}
        sig = self.interp.get_signature_list().get("serving_default")
        if sig:  # the signature's names, in PyTorch's order, map to tensor indices by suffix
            self._in = [_by_suffix(inputs, n) for n in sorted(sig["inputs"], key=_number)]
            self._out = [_by_suffix(outputs, n) for n in sorted(sig["outputs"], key=_number)]
        else:
            self._in, self._out = list(inputs.values()), list(outputs.values())
        self.input_names = [d["name"] for d in self._in]
        self.output_names = [d["name"] for d in self._out]

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        if len(arrays) != len(self._in):
            raise ExportError(f"the .tflite file takes {len(self._in)} inputs, given {len(arrays)}")
        for d, a in zip(self._in, arrays):
            self.interp.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self._out]


class LiteRT(Runtime):
    """LiteRT via ``litert-torch`` (converter) and ``ai-edge-litert`` (interpreter)."""

    name, format, suffix, extra = "litert", "tflite", ".tflite", "litert"
    packages, distribution = ("litert_torch", "ai_edge_litert"), "ai-edge-litert"

    def _write(self, model, args, kwargs, path: Path) -> None:
        import litert_torch

        if kwargs:
            raise ExportError("LiteRT export takes positional inputs only; pass the inputs as a tuple")
        # the converter prints progress on stdout and warns a lot; errors still arrive as exceptions
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            litert_torch.convert(model, tuple(args)).export(str(path))

    def _open(self, path: Path, threads: int | None) -> Session:
        return LiteRTSession(path, threads, self.version)


def _number(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 0


def _by_suffix(details: dict, sig_name: str) -> dict:
    for name, d in details.items():  # tensor names look like "serving_default_args_0" / "..._output_0_output"
        if re.search(rf"(^|_){re.escape(sig_name)}(:0|_output|$)", name):
            return d
    raise ExportError(f"the .tflite signature names {sig_name!r} but no tensor matches it: {list(details)}")
