"""An ONNX file run in ONNX Runtime, wrapped as a module: the accuracy of a deployed artifact is
measured by running *the file*, with the same evaluation function the PyTorch model was scored by.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class OnnxModule(nn.Module):
    """Calls an ONNX file in ONNX Runtime (CPU, all graph optimisations: the deployed kernels).

    ``forward(x)`` takes a float tensor batch and returns the first output as a tensor. A file
    with a fixed batch of 1 is run sample by sample. The module has no parameters: an evaluation
    function that asks for them (e.g. for a device) does not work with it.

    Args:
        path: the ONNX file.
        threads: intra-op threads.

    Example:
        >>> from edgeprune.tasks import evaluate  # doctest: +SKIP
        >>> evaluate(OnnxModule("runs/m/model.int8.onnx"), val_loader)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, threads: int = 2) -> None:
        super().__init__()
        from edgeprune.quantize.reference import session

        self.path = Path(path)
        self._session = session(self.path, threads=threads)
        meta = self._session.get_inputs()[0]
        self._input = meta.name
        self._fixed_batch = meta.shape[0] if meta.shape and isinstance(meta.shape[0], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().contiguous().numpy().astype(np.float32, copy=False)
        if self._fixed_batch is None or self._fixed_batch == array.shape[0]:
            return torch.from_numpy(self._session.run(None, {self._input: array})[0])
        if self._fixed_batch != 1:
            raise ValueError(f"{self.path.name} takes batches of {self._fixed_batch}, got {array.shape[0]}")
        return torch.from_numpy(np.concatenate([self._session.run(None, {self._input: array[i:i + 1]})[0]
                                                for i in range(array.shape[0])]))


class FileModule(nn.Module):
    """Calls a LiteRT ``.tflite`` (INT8 or FP32) or an ExecuTorch ``.pte`` sample by sample, or an
    OpenVINO IR ``.xml`` batch by batch, wrapped as a module, so the accuracy of that deployed file is
    measured with the run's evaluation function.

    An INT8 ``.tflite`` with integer inputs is fed its input quantized with the file's own parameters
    and its output dequantized (``edgeprune.quantize.litert.run_int8_tflite``); a ``.pte`` and an IR
    take and return float tensors (their quantize/dequantize are inside the program). An IR is
    compiled as the OpenVINO plug-in compiles it (``INFERENCE_PRECISION_HINT: f32``); one with a fixed
    batch of 1 is run sample by sample.

    Args:
        path: the file (``.tflite``, ``.pte`` or ``.xml``).
        threads: the runtime's threads.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 2) -> None:
        super().__init__()
        self.path = Path(path)
        self._batched = False  # an IR with a free batch runs whole batches
        if self.path.suffix == ".tflite":
            from ai_edge_litert.interpreter import Interpreter

            from edgeprune.quantize.litert import run_int8_tflite

            interp = Interpreter(model_path=str(self.path), num_threads=threads)
            interp.allocate_tensors()
            self._run = lambda x: run_int8_tflite(interp, x)
        elif self.path.suffix == ".pte":
            from edgeprune.runtimes import get_runtime

            session = get_runtime("executorch").open(self.path, threads)
            self._run = lambda x: session.run([x])[0]
        elif self.path.suffix == ".xml":
            from edgeprune.runtimes import get_runtime

            session = get_runtime("openvino").open(self.path, threads)
            self._run = lambda x: session.run([x])[0]
            self._batched = session.compiled.inputs[0].get_partial_shape()[0].is_dynamic
        else:
            raise ValueError(f"{self.path.name}: expected a .tflite, .pte or OpenVINO .xml file")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().contiguous().numpy().astype(np.float32, copy=False)
        if self._batched:
            return torch.from_numpy(self._run(array))
        return torch.from_numpy(np.concatenate([self._run(array[i:i + 1]) for i in range(array.shape[0])]))
