"""ONNX Runtime static INT8: ``quant_pre_process`` then ``quantize_static`` in QDQ format.

What is quantized how: weights of Conv, ConvTranspose, Gemm and MatMul to signed 8 bits, one
scale per output channel (``per_channel``: depthwise convs lose too much with one scale per
tensor), symmetric; activations to unsigned 8 bits (QUInt8), one scale and zero point per tensor,
asymmetric, their ranges the min/max seen on the calibration batches; biases to int32 at
``input_scale * weight_scale``. QUInt8 activations with QInt8 weights (U8S8) is the fast choice of
ORT's x86 kernels (VNNI): S8S8 measured slower here, once slower than FP32. Ops the quantizer has
no rule for run in float between a DequantizeLinear and a QuantizeLinear (e.g. ReduceMean);
an op that holds *weights* and stays float (e.g. GRU, LSTM) is refused by name
(:class:`~edgeprune.quantize.errors.UnsupportedOpError`): its file would be neither small nor fast.

``quant_pre_process`` runs shape inference and ORT's basic graph optimisations first (BatchNorm
folded into the conv before its weights are quantized, so the scales cover the folded weights).
The artifact is written beside its final name and renamed only after it has been checked
against its fake-quant reference (:mod:`edgeprune.quantize.reference`).
"""
from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune.quantize.calibration import check_batches
from edgeprune.quantize.errors import CalibrationDataError, QuantizeError, UnsupportedOpError
from edgeprune.quantize.reference import ParityReport, check_int8

RUNTIME = "ONNX Runtime"


@dataclass
class OrtInt8:
    """What :func:`quantize_onnx` wrote.

    Attributes:
        path: the INT8 file.
        bytes: its size.
        fp32_bytes: the size of the FP32 file it came from.
        ops: op type -> count in the INT8 graph.
        float_ops: op types of ops that run in float between dequantize and quantize (no weights).
        parity: the check against the fake-quant reference.
        calibration_batches: how many batches calibrated it.
        calibration_samples: how many samples those held.
    """

    path: Path
    bytes: int
    fp32_bytes: int
    ops: dict[str, int]
    float_ops: list[str]
    parity: ParityReport
    calibration_batches: int
    calibration_samples: int
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, "fp32_bytes": self.fp32_bytes, "ops": self.ops,
                "float_ops": self.float_ops, "parity": self.parity.to_dict(),
                "calibration_batches": self.calibration_batches, "calibration_samples": self.calibration_samples,
                "settings": self.settings}


def saturating_cpu() -> bool:
    """Whether this is an x86 CPU whose ONNX Runtime U8S8 kernels can saturate (no VNNI)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return True  # x86 of unknown features: the safe choice
    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, batches: Sequence[np.ndarray], *,
                  check_inputs: Sequence[np.ndarray] | None = None, per_channel: bool = True,
                  check: bool = True, reduce_range: bool | None = None) -> OrtInt8:
    """Quantize an FP32 ONNX file to static INT8 (QDQ, U8S8, per-channel weights) and check it.

    Args:
        fp32_path: the FP32 model (one tensor input; a free batch dimension lets calibration and
            evaluation run batched).
        out_path: where the INT8 file goes (written beside, renamed when checked).
        batches: calibration inputs, float32 ``(batch, *sample_shape)`` (see
            :func:`edgeprune.quantize.calibration_batches`).
        check_inputs: inputs for the fake-quant check (default: the first two calibration batches).
        per_channel: one weight scale per output channel (keep it on; off is for experiments).
        check: compare with the fake-quant reference (off only for files made to be timed, never
            deployed: random weights calibrated on noise can trip the x86 U8S8 kernels' int16
            saturation, which changes values, not time); ``parity`` is then ``None``.
        reduce_range: 7-bit weights, ONNX Runtime's documented remedy for x86 CPUs without VNNI,
            whose U8S8 kernels sum pairs of u8 x s8 products in int16 and saturate on wide inputs
            (measured here, AVX2 only: a digits CNN's INT8 file had 57.5% of its outputs within one
            step of the fake-quant reference, up to 11 steps off). ``None``: on when this CPU is x86
            without ``avx512_vnni`` / ``avx_vnni`` (the file is checked here, and a device like it has
            the same kernels); pass ``False`` for a file meant for a VNNI or ARM device.

    Returns:
        An :class:`OrtInt8`.

    Raises:
        CalibrationDataError: a batch does not fit the model's input (named), or there are none.
        UnsupportedOpError: an op with weights would stay in float (named).
        QuantizeError: the quantizer failed on the model.
        QuantizeMismatchError: the INT8 file disagrees with its fake-quant reference.

    Example:
        >>> q = quantize_onnx("model.onnx", "model.int8.onnx", batches)  # doctest: +SKIP
        >>> q.bytes / q.fp32_bytes  # doctest: +SKIP
        0.27
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if reduce_range is None:
        reduce_range = saturating_cpu()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    name, shape = single_input(onnx.load(str(fp32_path), load_external_data=False))
    if not batches:
        raise CalibrationDataError("no calibration batches")
    check_batches(batches, name, shape)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as work:
            pre = Path(work) / "pre.onnx"
            try:
                quant_pre_process(str(fp32_path), str(pre))
                quantize_static(str(pre), str(tmp), _Reader(name, batches), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                reduce_range=reduce_range)
            except QuantizeError:
                raise
            except Exception as exc:  # the quantizer raises many types; each means it failed on this model
                raise QuantizeError(f"{RUNTIME}'s quantizer failed on {fp32_path.name}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        model = onnx.load(str(tmp))
        float_ops = _refuse_float_weights(model)
        parity = check_int8(tmp, list(check_inputs) if check_inputs is not None else list(batches[:2]), name) \
            if check else None
        ops = dict(Counter(n.op_type for n in model.graph.node))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return OrtInt8(out_path, out_path.stat().st_size, fp32_path.stat().st_size, ops, float_ops, parity,
                   len(batches), int(sum(b.shape[0] for b in batches)),
                   {"format": "QDQ", "activations": "QUInt8 per tensor (asymmetric, min/max)",
                    "weights": ("QInt8 per channel" if per_channel else "QInt8 per tensor") + (", 7-bit range" if reduce_range else ""),
                    "bias": "int32"})


class _Reader:
    """The calibration batches as an ORT ``CalibrationDataReader`` (``get_next`` until ``None``)."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]) -> None:
        self._items = iter([{name: b} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def single_input(model) -> tuple[str, list[int | str | None]]:
    """The one graph input of an ONNX model: its name and shape (a free dimension as its name or ``None``)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QuantizeError(f"INT8 quantization takes a model with one tensor input; this one has {len(inputs)}: "
                            f"{[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def _refuse_float_weights(model) -> list[str]:
    """Raise on an op that consumes a float weight (an initializer of rank >= 2) directly, not
    through a DequantizeLinear; return the op types the quantizer has no rule for (they run in float)."""
    from onnx import TensorProto
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    weights = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2}
    known = set(QDQRegistry) | set(QLinearOpsRegistry) | {"QuantizeLinear", "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in weights for i in node.input):
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], RUNTIME)
    return sorted({n.op_type for n in model.graph.node if n.op_type not in known})
