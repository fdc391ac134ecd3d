"""OpenVINO static INT8 through NNCF: ``nncf.quantize`` on the checked ONNX file, then the IR.

The flow: the FP32 ONNX file (the one the run exported and checked against PyTorch) -> NNCF's ONNX
backend, ``nncf.quantize(model, dataset, subset_size=len(batches), target_device=CPU)`` with the
calibration batches -> a QDQ ONNX model -> ``openvino.convert_model`` -> ``model.int8.xml`` + ``.bin``.
What NNCF chooses for a CPU (its default ``PERFORMANCE`` preset): weights of Conv, Gemm and MatMul
int8, symmetric, one scale per output channel; activations 8 bit, symmetric, one scale per tensor
from the min/max seen on the calibration batches (unsigned after a ReLU, signed elsewhere); then its
fast bias correction shifts each quantized layer's bias so the layer's mean output matches FP32 on
the calibration data. Unlike ONNX Runtime's quantizer, NNCF leaves a graph output that comes
straight out of a Gemm or Conv in float (no quantize after the last layer).

OpenVINO's CPU plug-in reads the ``QuantizeLinear -> DequantizeLinear`` pairs as ``FakeQuantize``
and its low-precision transformations fold them into the convolutions and fully connected layers:
the compiled model's runtime graph (``get_runtime_model()``) shows each of them with runtime
precision ``u8`` / ``i8`` (:func:`int8_layers`); a file in which none runs on integers is refused.

Fake-quant reference: the same QDQ ONNX model run by ONNX Runtime with every graph optimisation
disabled (:func:`edgeprune.quantize.reference.session`), by the ONNX definition of the two ops a
fake-quant model at NNCF's scales (see :mod:`edgeprune.quantize.reference`). The reference is
therefore not the artifact: it is another runtime's float execution of the graph the IR was
converted from. The compiled IR must agree with it by the one-step rule of
:func:`edgeprune.quantize.reference.compare_steps` (the step of an output NNCF left in float is 1%
of the reference's largest magnitude, as for every float output). Why not NNCF's OpenVINO backend
(quantizing the ``ov.Model``): its FakeQuantize ops have no second runtime to run them as float
fake-quant, so the only reference would be the artifact itself.

The IR is compiled with ``INFERENCE_PRECISION_HINT: f32`` (as :mod:`edgeprune.runtimes.openvino`
does): the layers left in float then compute in float32, not in this CPU's default bf16.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune.quantize.calibration import check_batches
from edgeprune.quantize.errors import CalibrationDataError, QuantizeError, UnsupportedOpError, require
from edgeprune.quantize.reference import ParityReport, compare_steps, output_steps, session

RUNTIME = "OpenVINO"
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")
INTEGER = ("u8", "i8")


@dataclass
class OpenVINOInt8:
    """What :func:`quantize_openvino` wrote.

    Attributes:
        path: the IR's ``.xml`` (its weights in the ``.bin`` beside it).
        bytes: the IR's size, ``.xml`` and ``.bin`` together.
        fp32_bytes: the size of the FP32 ONNX file it came from.
        ops: op type -> count in NNCF's QDQ ONNX graph.
        int8_layers: layer type -> count of the compiled model's compute layers that run on u8/i8.
        float_layers: compute layers (Convolution, FullyConnected, ...) OpenVINO runs in float.
        parity: the check against the fake-quant reference.
        calibration_batches: how many batches calibrated it.
        calibration_samples: how many samples those held.
        settings: what was quantized how.
    """

    path: Path
    bytes: int
    fp32_bytes: int
    ops: dict[str, int]
    int8_layers: dict[str, int]
    float_layers: list[str]
    parity: ParityReport
    calibration_batches: int
    calibration_samples: int
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def float_ops(self) -> list[str]:
        """The compute layer types left in float (the run's ``float_ops``, as for the other runtimes)."""
        return sorted(set(self.float_layers))

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, "fp32_bytes": self.fp32_bytes, "ops": self.ops,
                "int8_layers": self.int8_layers, "float_layers": self.float_layers, "parity": self.parity.to_dict(),
                "calibration_batches": self.calibration_batches, "calibration_samples": self.calibration_samples,
                "settings": self.settings}


def ir_bytes(path: str | os.PathLike) -> int:
    """Bytes of an OpenVINO IR: the ``.xml`` and its ``.bin``."""
    path = Path(path)
    return path.stat().st_size + path.with_suffix(".bin").stat().st_size


def compile_ir(path: str | os.PathLike, threads: int = 1):
    """The IR compiled on OpenVINO's CPU plug-in as the runtime plug-in compiles it (f32 hint, one stream)."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(str(path), "CPU", config=config)


def int8_layers(compiled) -> tuple[dict[str, int], list[str]]:
    """Which compute layers of a compiled model run on integers.

    Args:
        compiled: an ``openvino.CompiledModel``.

    Returns:
        ``(int8, float)``: layer type -> count of compute layers (:data:`COMPUTE_LAYERS`) whose runtime
        precision is ``u8`` or ``i8``, and the names of those that run in anything else.
    """
    int8: Counter[str] = Counter()
    floats: list[str] = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in COMPUTE_LAYERS:
            continue
        if info["runtimePrecision"].astype(str) in INTEGER:
            int8[kind] += 1
        else:
            floats.append(f"{kind}:{op.get_friendly_name()}")
    return dict(int8), floats


def quantize_openvino(fp32_path: str | os.PathLike, out_path: str | os.PathLike, batches: Sequence[np.ndarray], *,
                      check_inputs: Sequence[np.ndarray] | None = None, threads: int = 1) -> OpenVINOInt8:
    """Quantize an FP32 ONNX file to an OpenVINO INT8 IR with NNCF and check it (see the module docstring).

    Args:
        fp32_path: the FP32 model (one tensor input; a free batch dimension lets calibration and
            evaluation run batched).
        out_path: the ``.xml`` to write (its ``.bin`` beside it); both are staged and moved into place
            only once checked.
        batches: calibration inputs, float32 ``(batch, *sample_shape)`` (see
            :func:`edgeprune.quantize.calibration_batches`); NNCF sees every one of them.
        check_inputs: inputs for the fake-quant check (default: the first two calibration batches).
        threads: OpenVINO's threads for the check.

    Returns:
        An :class:`OpenVINOInt8`.

    Raises:
        MissingExtraError: nncf or openvino is not installed (names ``pip install 'edgeprune[openvino]'``).
        CalibrationDataError: a batch does not fit the model's input (named), or there are none.
        UnsupportedOpError: an op with weights would stay in float (named).
        QuantizeError: NNCF or the converter failed, or no compute layer runs on integers.
        QuantizeMismatchError: the compiled IR disagrees with its fake-quant reference.

    Example:
        >>> q = quantize_openvino("model.onnx", "model.int8.xml", batches)  # doctest: +SKIP
        >>> q.int8_layers  # doctest: +SKIP
        {'Convolution': 2, 'FullyConnected': 1}
    """
    require("nncf", "openvino")
    require("openvino", "openvino")
    import onnx

    from edgeprune.quantize.ort import single_input

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if out_path.suffix != ".xml":
        raise QuantizeError(f"an OpenVINO IR is written as a .xml file (its weights in a .bin beside it), "
                            f"got {out_path.name}")
    model = onnx.load(str(fp32_path))
    name, shape = single_input(model)
    if not batches:
        raise CalibrationDataError("no calibration batches")
    check_batches(batches, name, shape)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stage = out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp"
    stage.mkdir()
    try:
        with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as work:
            qdq_path = Path(work) / "qdq.onnx"
            qdq = quantize_qdq(model, name, batches, fp32_path.name)
            onnx.save(qdq, str(qdq_path))
            _refuse_float_weights(qdq)
            staged = stage / out_path.name
            _convert(qdq_path, staged)
            compiled = compile_ir(staged, threads)
            layers, float_layers = int8_layers(compiled)
            if not layers:
                raise QuantizeError(f"{RUNTIME} compiled the INT8 model of {fp32_path.name} with no compute layer "
                                    f"on integers (float: {', '.join(float_layers) or 'none'})")
            inputs = list(check_inputs) if check_inputs is not None else list(batches[:2])
            parity = check_ir(compiled, qdq_path, inputs, name, staged)
            ops = dict(Counter(n.op_type for n in qdq.graph.node))
        for part in (out_path.with_suffix(".bin").name, out_path.name):  # the .xml last: what readers look for
            os.replace(stage / part, out_path.parent / part)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return OpenVINOInt8(out_path, ir_bytes(out_path), fp32_path.stat().st_size, ops, layers, float_layers, parity,
                        len(batches), int(sum(b.shape[0] for b in batches)),
                        {"quantizer": f"NNCF {_version('nncf')} (ONNX backend, target CPU, preset performance)",
                         "activations": "8 bit per tensor, symmetric (u8 after ReLU), min/max",
                         "weights": "int8 per channel, symmetric", "bias": "float, fast bias correction",
                         "ir": "converted from NNCF's QDQ ONNX"})


def check_ir(compiled, reference: str | os.PathLike, inputs: Sequence[np.ndarray], input_name: str,
             path: str | os.PathLike) -> ParityReport:
    """The compiled INT8 IR against the QDQ ONNX model run as fake quant by ONNX Runtime, batch by batch
    (the rule of :func:`edgeprune.quantize.reference.compare_steps`).

    Args:
        compiled: the IR compiled (:func:`compile_ir`).
        reference: the QDQ ONNX file the IR was converted from.
        inputs: float32 input batches.
        input_name: the ONNX graph input they feed.
        path: the IR, for the error message.
    """
    ref = session(reference, fake_quant=True)
    request = compiled.create_infer_request()
    outputs = len(compiled.outputs)
    got: list[list[np.ndarray]] = [[] for _ in range(outputs)]
    want: list[list[np.ndarray]] = [[] for _ in range(outputs)]
    for batch in inputs:
        request.infer([np.ascontiguousarray(batch)])
        expected = ref.run(None, {input_name: batch})
        for k in range(outputs):
            got[k].append(request.get_output_tensor(k).data.copy())
            want[k].append(expected[k])
    return compare_steps([np.concatenate(g) for g in got], [np.concatenate(w) for w in want],
                         output_steps(reference), path)


def quantize_qdq(model, input_name: str, batches: Sequence[np.ndarray], label: str = "the model"):
    """NNCF's ONNX backend on every calibration batch: the QDQ ONNX model the IR is converted from and
    that, run as fake quant, is its reference (deterministic: the same batches give the same model).

    Args:
        model: the FP32 ``onnx.ModelProto``.
        input_name: its input.
        batches: the calibration batches (``subset_size`` is their number: NNCF counts dataset items).
        label: the model's name in an error.

    Returns:
        The quantized ``onnx.ModelProto``.

    Raises:
        QuantizeError: NNCF failed (its message).
    """
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)  # its progress bars and notes are not the run's
    dataset = nncf.Dataset(list(batches), lambda b: {input_name: b})
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return nncf.quantize(model, dataset, subset_size=len(batches), target_device=nncf.TargetDevice.CPU)
    except Exception as exc:  # NNCF raises many types; each means it failed on this model
        raise QuantizeError(f"NNCF failed to quantize {label}: {type(exc).__name__}: {str(exc)[:500]}") from exc


def _convert(qdq_path: Path, xml: Path) -> None:
    import openvino as ov

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            ov.save_model(ov.convert_model(str(qdq_path)), str(xml), compress_to_fp16=False)
    except Exception as exc:  # the converter raises its own types
        raise QuantizeError(f"{RUNTIME} could not convert NNCF's INT8 model: {type(exc).__name__}: "
                            f"{str(exc)[:500]}") from exc


def _refuse_float_weights(model) -> None:
    """Raise on an op that reads a float weight (an initializer of rank >= 2) directly, not through a
    DequantizeLinear: NNCF had no int8 rule for it (e.g. GRU, LSTM), and its file would be neither small
    nor fast."""
    from onnx import TensorProto

    weights = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in weights for i in node.input):
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], f"{RUNTIME} (NNCF)")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
