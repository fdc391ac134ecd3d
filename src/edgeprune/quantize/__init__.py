"""INT8 quantization per runtime, calibrated on the user's data, checked against a fake-quant reference.

    calibration   a named number of batches drawn from the user's data, reproducible with a seed
    ort           ONNX Runtime static INT8 (``quant_pre_process`` + ``quantize_static``, QDQ, U8S8,
                  per-channel weights) -> ``model.int8.onnx``
    reference     the fake-quant reference (the QDQ graph run unfused) and the one-step check
    artifact      an INT8 file run as a module, so any evaluation function scores the file itself
    openvino      OpenVINO static INT8 through NNCF on the ONNX file -> ``model.int8.xml`` + ``.bin``
    files         one runtime -> toolchain mapping (``quantize_model``); random calibration for timing

Quantize after pruning and fine-tuning, never before (the scales belong to the final weights).
Nothing here is imported by ``import edgeprune``; ``onnxruntime.quantization`` loads on first use.

Example:
    >>> from edgeprune.quantize import Calibration, calibration_batches, quantize_onnx  # doctest: +SKIP
    >>> batches = calibration_batches(train_loader, Calibration(num_batches=8, seed=0))  # doctest: +SKIP
    >>> q = quantize_onnx("model.onnx", "model.int8.onnx", batches)  # doctest: +SKIP
"""
from importlib import import_module
from typing import Any

from edgeprune.quantize.errors import CalibrationDataError, QuantizeError, QuantizeMismatchError, UnsupportedOpError

_LAZY = {
    "Calibration": "edgeprune.quantize.calibration", "calibration_batches": "edgeprune.quantize.calibration",
    "quantize_onnx": "edgeprune.quantize.ort", "OrtInt8": "edgeprune.quantize.ort",
    "quantize_openvino": "edgeprune.quantize.openvino", "OpenVINOInt8": "edgeprune.quantize.openvino",
    "check_int8": "edgeprune.quantize.reference", "ParityReport": "edgeprune.quantize.reference",
    "OnnxModule": "edgeprune.quantize.artifact",
    "FileModule": "edgeprune.quantize.artifact",
    "quantize_model": "edgeprune.quantize.files", "synthetic_batches": "edgeprune.quantize.files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeprune.quantize' has no attribute {name!r}")


__all__ = ["CalibrationDataError", "QuantizeError", "QuantizeMismatchError", "UnsupportedOpError", *_LAZY]
