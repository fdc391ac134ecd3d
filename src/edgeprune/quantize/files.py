"""A model's INT8 file for a runtime, by the quantizer a ``--quantize int8`` run uses there.

One mapping from runtime to toolchain (the run's INT8 step, the INT8 latency tables' calibration
models and the latency search's measurements all go through it):

- ``onnxruntime``: ONNX export (free batch), then :func:`edgeprune.quantize.ort.quantize_onnx`
  (QDQ, U8S8, per-channel weights);
- ``litert`` / ``tflm``: :func:`edgeprune.quantize.litert.quantize_litert` (PT2E, residual adds annotated);
- ``executorch``: :func:`edgeprune.quantize.executorch.quantize_executorch` (XNNPACKQuantizer);
- ``openvino``: ONNX export (free batch), then :func:`edgeprune.quantize.openvino.quantize_openvino`
  (NNCF on the ONNX file, IR converted from its QDQ model).

For *timing* an INT8 file, :func:`synthetic_batches` calibrates on random inputs: the scales
change the values an int8 kernel computes, not how long it takes (the same ops, the same int8
tensor shapes, the same kernels), so a latency table or a latency search need no user data. A
file meant to be *deployed* is calibrated on real data (``edgeprune.quantize.calibration_batches``).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.quantize.errors import QuantizeError

INT8_RUNTIMES = ("onnxruntime", "litert", "tflm", "executorch", "openvino")


def synthetic_batches(example: torch.Tensor, num_batches: int = 2, batch_size: int = 2,
                      seed: int = 0) -> list[np.ndarray]:
    """Standard-normal calibration batches of ``example``'s sample shape (for timing only, see above)."""
    rng = np.random.default_rng(seed)
    shape = tuple(example.shape[1:])
    return [rng.standard_normal((batch_size, *shape)).astype(np.float32) for _ in range(num_batches)]


def quantize_model(runtime: str, model: nn.Module, example: torch.Tensor, out_path: str | os.PathLike,
                   batches: Sequence[np.ndarray], *, exporter: str = "auto", check: bool = True) -> Any:
    """Write ``model``'s INT8 file for ``runtime`` at ``out_path``, checked against its fake-quant reference.

    Args:
        runtime: ``onnxruntime``, ``litert``, ``tflm``, ``executorch`` or ``openvino``.
        model: the model (one tensor input).
        example: its example input, batch 1.
        out_path: the INT8 file.
        batches: calibration inputs ``(batch, *sample_shape)``.
        exporter: the ONNX exporter (ONNX Runtime and OpenVINO; ``"torchscript"`` exports faster).
        check: ONNX Runtime only: off for a file made to be timed (see ``quantize_onnx``).

    Returns:
        The quantizer's record (``.path``, ``.bytes``, ``.parity``, ...).

    Raises:
        QuantizeError: a runtime with no INT8 path, or the quantizer failed (named).
    """
    if runtime not in INT8_RUNTIMES:
        raise QuantizeError(f"no INT8 path for runtime {runtime!r} (INT8 files are made for "
                            f"{', '.join(INT8_RUNTIMES)})")
    if not isinstance(example, torch.Tensor):
        raise QuantizeError("INT8 quantization takes a model with one tensor input")
    if runtime == "onnxruntime":
        from edgeprune.export.onnx import export_onnx
        from edgeprune.quantize.ort import quantize_onnx

        with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as tmp:
            fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx", dynamic_batch=True, exporter=exporter)
            return quantize_onnx(fp32, out_path, batches, check_inputs=list(batches[:1]), check=check)
    if runtime == "openvino":
        from edgeprune.export.onnx import export_onnx
        from edgeprune.quantize.openvino import quantize_openvino

        with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as tmp:
            fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx", dynamic_batch=True, exporter=exporter)
            return quantize_openvino(fp32, out_path, batches, check_inputs=list(batches[:1]))
    if runtime in ("litert", "tflm"):
        from edgeprune.quantize.litert import quantize_litert as quantize
    else:
        from edgeprune.quantize.executorch import quantize_executorch as quantize
    return quantize(model, example[:1], batches, out_path, check_inputs=[batches[0][:1]])
