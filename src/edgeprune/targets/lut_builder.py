#!/usr/bin/env python3
"""Build a latency lookup table on the device itself, with only ``onnxruntime`` and ``numpy``.

This file is self-contained on purpose: copy it to the device (``edgeprune target script > build_lut.py``
prints it) and run it there. It imports nothing from edgeprune, torch or the ``onnx`` package:
onnxruntime and numpy are what a Raspberry Pi image reliably has (``pip install onnx`` needs a wheel
for the board's Python and protobuf, which is not always there), so the single-op ONNX graphs are
written directly in the protobuf wire format (:func:`conv_model_bytes`, about 60 lines; the host's
tests check them against the ``onnx`` package's own parser and checker).

Usage on the device::

    python build_lut.py ops.json --threads 2 --out table.json

``ops.json`` (written on the host by ``edgeprune target ops MODEL``) lists the layer shapes to time
and the channel counts to try. Each (op, c_in, c_out) point becomes one graph ``Conv(+bias)
[+Relu|Clip]`` (or ``Gemm``), is loaded in an ONNX Runtime session with the settings of
``edgeprune.measure.latency.ort_session`` (CPU provider, ``intra_op_num_threads = threads``,
``inter_op_num_threads = 1``, sequential execution, ``ORT_ENABLE_ALL``) and timed with the protocol of
``edgeprune.measure.latency.time_calls`` (``warmup`` untimed runs, then ``runs`` runs each timed
alone). Those two pieces are repeated here, in a dozen lines, only because that module imports
torch; keep them in step (a test compares the session options).

Other runtimes time the same points with their own single-op graphs: ``--runtime litert``
(``lut_litert.py``: ``.tflite`` graphs written with the schema ``ai-edge-litert`` ships; needs only
ai-edge-litert and numpy) and ``--runtime openvino`` (``lut_openvino.py``: these ONNX graphs compiled
by OpenVINO; needs only openvino and numpy). Copy the back end's file beside this one (``edgeprune
target ops MODEL --runtime R`` writes both). ExecuTorch has no torch-free way to write a ``.pte``:
its table is built on the host (``edgeprune.targets.lut_executorch``), which must then be the target.

``--precision int8`` times every point with the runtime's int8 kernels instead (their staircase
differs: XNNPACK and ONNX Runtime block int8 channels differently from float ones): here each point is
the QDQ graph ONNX Runtime's static quantizer emits for that op (uint8 activations, int8 weights per
output channel, int32 bias: ``DequantizeLinear -> Conv -> QuantizeLinear``), which ONNX Runtime fuses
into one ``QLinearConv`` / ``QGemm`` kernel; :func:`int8_params` gives the quantized tensors, and
the table records its precision (an INT8 run refuses a float32 table, and the reverse).

The output (format ``edgeprune.latency_table``) is plain JSON: see ``docs/hardware.md``.
"""
from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import platform
import struct
import sys
import time
from typing import Any

import numpy as np

TABLE_FORMAT = "edgeprune.latency_table"
OPS_FORMAT = "edgeprune.latency_ops"
FORMAT_VERSION = 1
OPSET = 17
IR_VERSION = 8
FLOAT, UINT8, INT8, INT32 = 1, 2, 3, 6  # TensorProto data types
PRECISIONS = ("float32", "int8")


# --- protobuf wire format: just what an ONNX ModelProto with initializers needs ------------------

def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields encode negatives as ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(field, 2) + _varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


_ONNX_TYPES = {np.dtype("float32"): FLOAT, np.dtype("uint8"): UINT8, np.dtype("int8"): INT8,
               np.dtype("int32"): INT32}


def _tensor(name: str, array: np.ndarray, dtype: str = "<f4") -> bytes:
    """TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian; float32 unless ``dtype``)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return (b"".join(_int(1, d) for d in array.shape) + _int(2, _ONNX_TYPES[array.dtype.newbyteorder("=")])
            + _bytes(8, name) + _bytes(9, array.tobytes()))


def _value_info(name: str, shape: tuple[int, ...], elem_type: int = FLOAT) -> bytes:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1: {dim_value=1}}}}}."""
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _attr_ints(name: str, values: list[int]) -> bytes:
    """AttributeProto: name=1, ints=8 (unpacked, as proto2 writes them), type=20 (INTS=7)."""
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)


def _attr_int(name: str, value: int) -> bytes:
    return _bytes(1, name) + _int(3, value) + _int(20, 2)  # i=3, INT=2


def _node(op_type: str, inputs: list[str], outputs: list[str], attrs: list[bytes], name: str) -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5."""
    return (b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
            + _bytes(3, name) + _bytes(4, op_type) + b"".join(_bytes(5, a) for a in attrs))


def _model(nodes: list[bytes], inits: list[bytes], inputs: list[bytes], outputs: list[bytes]) -> bytes:
    """ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8 {domain=1, version=2}."""
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "edgeprune_lut")
             + b"".join(_bytes(5, t) for t in inits) + b"".join(_bytes(11, i) for i in inputs)
             + b"".join(_bytes(12, o) for o in outputs))
    return (_int(1, IR_VERSION) + _bytes(2, "edgeprune.lut_builder") + _bytes(7, graph)
            + _bytes(8, _bytes(1, "") + _int(2, OPSET)))


def conv_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0) -> bytes:
    """One serialized ONNX model: ``X -> Conv(W, B) [-> Relu | Clip(0, 6)] -> Y`` or ``X -> Gemm -> Y``.

    Args:
        op: an entry of ``ops.json``: ``kind`` ("conv" or "gemm"), ``kernel``, ``stride``, ``pads``
            (top, left, bottom, right), ``dilation``, ``depthwise``, ``hw`` (input height, width;
            for a gemm ``[rows, 1]``, rows = the tokens a Linear on a sequence reads, 1 when absent),
            ``act`` ("relu", "relu6" or null).
        c_in: input channels (for a depthwise conv: ignored, it has ``c_out`` groups of one).
        c_out: output channels.
        seed: seed of the random weights.

    Returns:
        The ``ModelProto`` bytes, loadable by ``onnxruntime.InferenceSession``.
    """
    rng = np.random.default_rng(seed)
    act = op.get("act")
    if op["kind"] == "gemm":
        rows = _gemm_rows(op)  # tokens of a Linear on a sequence (1 for a classifier)
        x_shape, y_shape = (rows, c_in), (rows, c_out)
        inits = [_tensor("W", rng.standard_normal((c_out, c_in), dtype=np.float32) * 0.05),
                 _tensor("B", rng.standard_normal(c_out, dtype=np.float32) * 0.05)]
        main = _node("Gemm", ["X", "W", "B"], ["Z" if act else "Y"], [_attr_int("transB", 1)], "gemm")
    elif op["kind"] == "conv":
        x_shape, y_shape, attrs = _conv_shapes(op, c_in, c_out)
        c_in, groups = x_shape[1], (c_out if op.get("depthwise") else 1)
        kh, kw = op["kernel"]
        weight = rng.standard_normal((c_out, c_in // groups, kh, kw), dtype=np.float32) * 0.05
        inits = [_tensor("W", weight), _tensor("B", rng.standard_normal(c_out, dtype=np.float32) * 0.05)]
        main = _node("Conv", ["X", "W", "B"], ["Z" if act else "Y"], attrs, "conv")
    else:
        raise ValueError(f"unknown op kind {op['kind']!r} (expected 'conv' or 'gemm')")
    nodes = [main]
    if act == "relu":
        nodes.append(_node("Relu", ["Z"], ["Y"], [], "act"))
    elif act == "relu6":
        inits += [_tensor("lo", np.zeros((), np.float32)), _tensor("hi", np.full((), 6.0, np.float32))]
        nodes.append(_node("Clip", ["Z", "lo", "hi"], ["Y"], [], "act"))
    elif act:
        raise ValueError(f"unknown activation {act!r} (expected 'relu', 'relu6' or null)")
    return _model(nodes, inits, [_value_info("X", x_shape)], [_value_info("Y", y_shape)])


def int8_params(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0, activations: str = "uint8") -> dict[str, Any]:
    """The quantized tensors of one int8 point, as a static quantizer would leave them.

    Weights: random normal, int8 symmetric with one scale per output channel (zero point 0), in
    PyTorch's layout (``(c_out, c_in / groups, kh, kw)``, a gemm ``(c_out, c_in)``); bias int32 at
    ``x_scale * w_scale``. Activations (``"uint8"``: ONNX Runtime's U8S8; ``"int8"``: LiteRT's) one
    scale and zero point per tensor; the output's scale holds about three standard deviations of
    the accumulator, and its zero point sits at the range's minimum after a ReLU (the quantizer
    folds ReLU and ReLU6 into the output's range: ReLU6 also caps the range at 6).

    Returns:
        ``{"w", "w_scale", "b", "x_scale", "x_zero", "y_scale", "y_zero", "qmin", "qmax", "fan_in"}``.
    """
    rng = np.random.default_rng(seed)
    qmin, qmax = (0, 255) if activations == "uint8" else (-128, 127)
    if op["kind"] == "gemm":
        shape = (c_out, c_in)
    else:
        kh, kw = op["kernel"]
        shape = (c_out, 1 if op.get("depthwise") else c_in, kh, kw)
    w = rng.standard_normal(shape, dtype=np.float32) * 0.05
    w_scale = (np.abs(w).reshape(c_out, -1).max(axis=1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
    x_scale, x_zero = 0.02, (qmin + qmax + 1) // 2
    b_q = np.round(rng.standard_normal(c_out) * 0.05 / (x_scale * w_scale)).astype(np.int32)
    fan_in = int(np.prod(shape[1:]))
    x_std = (qmax - qmin + 1) / np.sqrt(12)  # a uniform input over the whole range
    y_std = np.sqrt(fan_in) * x_std * float(np.std(w_q.astype(np.float32))) * x_scale * float(np.mean(w_scale))
    y_scale = float(np.float32(3 * y_std / 127))
    act = op.get("act")
    if act not in ("relu", "relu6", None):
        raise ValueError(f"unknown activation {act!r} (expected 'relu', 'relu6' or null)")
    if act == "relu6":
        y_scale = min(y_scale, 6.0 / (qmax - qmin))
    y_zero = qmin if act else (qmin + qmax + 1) // 2
    return {"w": w_q, "w_scale": w_scale, "b": b_q, "x_scale": x_scale, "x_zero": x_zero, "y_scale": y_scale,
            "y_zero": y_zero, "qmin": qmin, "qmax": qmax, "fan_in": fan_in}


def qdq_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0, nhwc: bool = True) -> bytes:
    """One serialized int8 ONNX model in the QDQ form of ONNX Runtime's static quantizer (U8S8,
    per-channel weights): ``X(uint8) -> DequantizeLinear -> Conv|Gemm (weights and bias through
    DequantizeLinear) -> QuantizeLinear -> Y(uint8)``, the activation folded into Y's range.

    ONNX Runtime fuses it into one int8 kernel (``QLinearConv``; a gemm: ``QGemm``), as it fuses the
    quantized model's ops. The tensors are :func:`int8_params`'s (``activations="uint8"``).
    ``nhwc=False`` leaves a conv's input and output NCHW, without the edge transposes (OpenVINO: a
    transpose between the uint8 input and its dequantize keeps its conv in float32).
    """
    q = int8_params(op, c_in, c_out, seed, "uint8")
    scalar = lambda name, v, dtype: _tensor(name, np.asarray(v), dtype)  # noqa: E731
    inits = [scalar("xs", q["x_scale"], "<f4"), scalar("xz", q["x_zero"], "u1"),
             scalar("ys", q["y_scale"], "<f4"), scalar("yz", q["y_zero"], "u1"),
             _tensor("Wq", q["w"], "i1"), _tensor("ws", q["w_scale"]), _tensor("wz", np.zeros(c_out), "i1"),
             _tensor("Bq", q["b"], "<i4"), _tensor("bs", (q["x_scale"] * q["w_scale"]).astype(np.float32)),
             _tensor("bz", np.zeros(c_out), "<i4")]
    axis0 = [_attr_int("axis", 0)]
    nodes = [_node("DequantizeLinear", ["Xc" if op["kind"] == "conv" else "X", "xs", "xz"], ["Xf"], [], "dq_x"),
             _node("DequantizeLinear", ["Wq", "ws", "wz"], ["W"], axis0, "dq_w"),
             _node("DequantizeLinear", ["Bq", "bs", "bz"], ["B"], axis0, "dq_b")]
    if op["kind"] == "gemm":
        rows = _gemm_rows(op)
        x_shape, y_shape = (rows, c_in), (rows, c_out)
        nodes.append(_node("Gemm", ["Xf", "W", "B"], ["Z"], [_attr_int("transB", 1)], "gemm"))
    elif op["kind"] == "conv":
        (n, c, h, w), (_, k, oh, ow), attrs = _conv_shapes(op, c_in, c_out)
        # NHWC at the graph's edges: ONNX Runtime runs int8 convs in NHWC and, inside a model, keeps
        # the whole chain NHWC; here the edge transposes cancel against the ones it inserts
        x_shape, y_shape = ((n, h, w, c), (n, oh, ow, k)) if nhwc else ((n, c, h, w), (n, k, oh, ow))
        if nhwc:
            nodes.insert(0, _node("Transpose", ["X"], ["Xc"], [_attr_ints("perm", [0, 3, 1, 2])], "to_nchw"))
        else:
            nodes[0] = _node("DequantizeLinear", ["X", "xs", "xz"], ["Xf"], [], "dq_x")
        nodes.append(_node("Conv", ["Xf", "W", "B"], ["Z"], attrs, "conv"))
    else:
        raise ValueError(f"unknown op kind {op['kind']!r} (expected 'conv' or 'gemm')")
    last = "Yc" if op["kind"] == "conv" and nhwc else "Y"
    nodes.append(_node("QuantizeLinear", ["Z", "ys", "yz"], [last], [], "q_y"))
    if op["kind"] == "conv" and nhwc:
        nodes.append(_node("Transpose", ["Yc"], ["Y"], [_attr_ints("perm", [0, 2, 3, 1])], "to_nhwc"))
    return _model(nodes, inits, [_value_info("X", x_shape, UINT8)], [_value_info("Y", y_shape, UINT8)])


def _conv_shapes(op: dict[str, Any], c_in: int, c_out: int) -> tuple[tuple[int, ...], tuple[int, ...], list[bytes]]:
    """Input and output shapes (NCHW) of a conv op at these counts, and its ONNX attributes."""
    kh, kw = op["kernel"]
    sh, sw = op["stride"]
    dh, dw = op.get("dilation", [1, 1])
    pads = list(op["pads"])  # ONNX order: (top, left, bottom, right)
    h, w = op["hw"]
    groups = c_out if op.get("depthwise") else 1
    if op.get("depthwise"):
        c_in = c_out
    oh = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    attrs = [_attr_ints("kernel_shape", [kh, kw]), _attr_ints("strides", [sh, sw]),
             _attr_ints("pads", pads), _attr_ints("dilations", [dh, dw]), _attr_int("group", groups)]
    return (1, c_in, h, w), (1, c_out, oh, ow), attrs


def op_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0, precision: str = "float32") -> bytes:
    """The point's ONNX graph at ``precision``: :func:`conv_model_bytes` or :func:`qdq_model_bytes`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    return (qdq_model_bytes if precision == "int8" else conv_model_bytes)(op, c_in, c_out, seed)


# --- measuring ---------------------------------------------------------------------------------

def session_options(threads: int, *, spinning: bool = True):
    """``edgeprune.measure.latency.ort_session``'s options; ``spinning=False`` makes idle worker threads block."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def session(model: bytes | str, threads: int, *, spinning: bool = True):
    """An ONNX Runtime CPU session (from model bytes or a path) with :func:`session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(model, sess_options=session_options(threads, spinning=spinning),
                                providers=["CPUExecutionProvider"])


STATISTICS = {"median": np.median, "min": np.min, "p25": lambda a: np.percentile(a, 25)}


COLD_MIN_BYTES = 2 << 20   # ops with fewer weight bytes are timed warm (their weights hardly matter)
COLD_MAX_COPIES = 16


def weight_bytes(op: dict[str, Any], c_in: int, c_out: int, precision: str = "float32") -> int:
    """Bytes of the op's weights at these channel counts (4 per weight in float32, 1 in int8)."""
    size = 1 if precision == "int8" else 4
    if op["kind"] == "gemm":
        return size * c_in * c_out
    kh, kw = op["kernel"]
    return size * c_out * (1 if op.get("depthwise") else c_in) * kh * kw


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0, precision: str = "float32") -> float:
    """Latency (ms) of one op at one channel count: ``warmup`` untimed runs, then ``runs`` timed alone.

    ``precision="int8"`` times the op's QDQ graph (:func:`qdq_model_bytes`) on uint8 input: ONNX
    Runtime's int8 kernel.

    With ``cold_bytes`` > 0 (the size of the last-level cache, when the whole model's weights do not
    fit in it) an op with large weights is timed with them coming from memory, as inside the model:
    several copies with different weights (together 1.5x ``cold_bytes``) run in turn, so each
    copy's weights have been evicted by the others when its turn comes.
    """
    copies = cold_copies(weight_bytes(op, c_in, c_out, precision), cold_bytes)
    sessions = [session(op_model_bytes(op, c_in, c_out, seed=k, precision=precision), threads, spinning=spinning)
                for k in range(copies)]
    feed = {"X": random_input(_input_shape(op, c_in, c_out, precision), precision, "uint8")}
    turn = itertools.cycle(sessions)  # each call runs the next copy
    return timed(lambda: next(turn).run(None, feed), runs=runs, warmup=warmup * copies, stat=stat)


CACHE_MAX_BYTES = 1 << 20  # back ends that compile slowly keep small ops' compiled graphs for reuse
CACHE_ENTRIES = 512


def cached(cache: dict, key: Any, weight_nbytes: int, make):
    """``make()`` remembered in ``cache`` under ``key`` when the op's weights are small (the
    staircase sweeps time each small op several times; compiling it once is enough)."""
    if weight_nbytes > CACHE_MAX_BYTES:
        return make()
    if key not in cache:
        if len(cache) >= CACHE_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def cold_copies(weight_nbytes: int, cold_bytes: int) -> int:
    """How many copies of an op with ``weight_nbytes`` of weights run in turn so that each one's
    weights come from memory (1: timed warm; see :func:`time_point`)."""
    if not cold_bytes or weight_nbytes < COLD_MIN_BYTES:
        return 1
    return int(min(COLD_MAX_COPIES, max(2, -(-3 * cold_bytes // (2 * weight_nbytes)))))


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), or 8 MiB when it cannot be read."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size"), encoding="utf-8") as f:
                    text = f.read().strip().upper()
                mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
                best = max(best, int(text.rstrip("KMG")) * mult)
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return best or 8 << 20


def timed(call, *, runs: int, warmup: int, stat: str) -> float:
    """``warmup`` untimed calls, then ``runs`` calls each timed alone; their ``stat`` in ms."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return float(STATISTICS[stat](np.asarray(samples)))


def random_input(shape: tuple[int, ...], precision: str = "float32", activations: str = "uint8") -> np.ndarray:
    """A point's input: standard normal float32, or uniform over the activation type's range for int8."""
    rng = np.random.default_rng(1)
    if precision != "int8":
        return rng.standard_normal(shape, dtype=np.float32)
    info = np.iinfo(activations)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(activations)


def _gemm_rows(op: dict[str, Any]) -> int:
    return int(op.get("hw", [1, 1])[0])


def _input_shape(op: dict[str, Any], c_in: int, c_out: int, precision: str = "float32") -> tuple[int, ...]:
    """The point's input shape: NCHW, or NHWC for the int8 graph (:func:`qdq_model_bytes`)."""
    if op["kind"] == "gemm":
        return (_gemm_rows(op), c_in)
    c = c_out if op.get("depthwise") else c_in
    return (1, *op["hw"], c) if precision == "int8" else (1, c, *op["hw"])


RUNTIMES = ("onnxruntime", "litert", "openvino", "executorch")
DEVICE_RUNTIMES = RUNTIMES[:3]  # ExecuTorch's single-op files need torch: its tables are built on the host
MODEL_SUFFIX = ".onnx"
GRAPH = "Conv(+bias) or Gemm, random weights, batch 1"
GRAPH_INT8 = ("QDQ Conv or Gemm (uint8 activations, int8 per-channel weights, int32 bias; fused by ONNX Runtime "
              "into QLinearConv / QGemm), random weights, batch 1")


def runtime_version() -> str:
    """The installed ``onnxruntime`` version."""
    import onnxruntime as ort

    return ort.__version__


def backend(runtime: str = "onnxruntime"):
    """The module that times points and models on ``runtime``: this one for ONNX Runtime, else
    ``lut_<runtime>`` (beside this file on a device, ``edgeprune.targets.lut_<runtime>`` in the package).

    A back end provides ``time_point``, ``time_model``, ``runtime_version``, ``MODEL_SUFFIX`` and ``GRAPH``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"no latency-table back end for runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if runtime == "onnxruntime":
        return sys.modules[__name__]
    name = f"lut_{runtime}"
    return importlib.import_module(f"{__package__}.{name}" if __package__ else name)


def target_info(threads: int, runtime: str = "onnxruntime", precision: str = "float32") -> dict[str, Any]:
    """What a latency figure depends on: CPU model, ISA, runtime and its version, threads, and the
    precision of the kernels timed; ``key`` joins them."""
    version = backend(runtime).runtime_version()
    info = {"cpu": _cpu_model(), "machine": platform.machine(), "system": platform.system(),
            "cpu_count": os.cpu_count(), "isa": _isa_flags(), "llc_bytes": last_level_cache_bytes(),
            "runtime": runtime, "runtime_version": version,
            "threads": int(threads), "precision": precision, "numpy": np.__version__,
            "python": platform.python_version()}
    if runtime == "onnxruntime":
        info["onnxruntime"] = version  # tables written before other runtimes had only this field
    info["key"] = target_key(info)
    return info


def target_key(info: dict[str, Any]) -> str:
    """``"<cpu>|<runtime>-<version>|threads-<n>"`` (``|int8`` appended for int8 kernels): tables are only
    valid for the target, and the precision, they were built for."""
    runtime = info.get("runtime", "onnxruntime")
    version = info.get("runtime_version", info.get("onnxruntime"))
    key = f"{info['cpu']}|{runtime}-{version}|threads-{info['threads']}"
    return key + "|int8" if info.get("precision", "float32") == "int8" else key



def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        for name in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            if fields.get(name):
                return fields[name]
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _isa_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "neon", "asimd", "asimddp", "sve")
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def layout_step() -> int:
    """ONNX Runtime's channel block on x86 (16 with AVX-512, 8 with AVX2, else 1).

    Its CPU provider runs a chain of convolutions in the blocked NCHWc layout when every channel
    count is a multiple of the block and falls back to plain NCHW with layout reorders between the
    ops where one is not. A single-op sweep cannot see it (each point is one conv, reorders on
    both sides either way), a model does: mobilenet_v2 with 60% of its expansions kept at odd widths
    ran at 0.70x of the unpruned model here, and 1.8x faster with the same widths rounded to 8
    (issue 13). So every convolution's channel groups step on at least the block on this runtime.
    """
    isa = set(_isa_flags())
    return 16 if "avx512f" in isa else 8 if "avx2" in isa else 1


PROBE_CHANNELS = (40, 97)   # the staircase sweep: every count in this range ...
PROBE_FIXED = 64            # ... with the other axis at this count ...
PROBE_HW = (14, 14)         # ... on a small feature map (cheap, still compute-bound)
STEP_CANDIDATES = (1, 2, 4, 8, 16)  # the sweep holds three multiples of 16 with their next steps


def probe_op(family_op: dict[str, Any]) -> dict[str, Any]:
    """The small op on which a family's staircase is swept (its kernel, stride 1, same padding)."""
    op = dict(family_op)
    if op["kind"] == "conv":
        kh, kw = op["kernel"]
        op.update(stride=[1, 1], dilation=[1, 1], hw=list(PROBE_HW), pads=[kh // 2, kw // 2, kh // 2, kw // 2])
    return op


def sweep(op: dict[str, Any], axis: str, *, threads: int, runs: int, warmup: int, stat: str,
          spinning: bool = True, passes: int = 1, timer=None, counts: tuple[int, int] = PROBE_CHANNELS,
          precision: str = "float32") -> dict[str, float]:
    """Latency at every channel count of ``PROBE_CHANNELS`` along ``axis`` ("c_in", "c_out"; "c" for depthwise).

    The sweep is repeated ``passes`` times and each count keeps its smallest figure (see :func:`build`).
    ``timer`` is a back end's ``time_point`` (default: ONNX Runtime's); ``counts`` the swept range.
    """
    timer = timer or time_point
    out: dict[str, float] = {}
    for _ in range(passes):
        for c in range(counts[0], counts[1] + 1):
            ci, co = (PROBE_FIXED, c) if axis in ("c_out", "c") else (c, PROBE_FIXED)
            ms = round(timer(op, ci, co, threads=threads, runs=runs, warmup=warmup, stat=stat,
                             spinning=spinning, precision=precision), 5)
            out[str(c)] = min(ms, out.get(str(c), ms))
    return out


def fast_step(curve: dict[str, float], tolerance: float = 0.03, share: float = 0.75) -> int:
    """The period of a staircase: the smallest channel step p whose multiples are each faster than
    every larger count up to the next multiple.

    On a staircase with period p, a multiple m of p is the last count before a step up (the kernel
    pads m + 1 up to m + p), or the cheap point of a slow run of off-step counts: either way every
    count in (m, m + p] takes at least ``1 + tolerance`` times as long as m. The smallest p for which
    that holds at ``share`` of its multiples is the period; none gives 1 (no staircase: take any count).
    """
    counts = sorted(int(c) for c in curve)
    have = set(counts)
    for p in STEP_CANDIDATES[1:]:
        checks = []
        for m in counts:
            window = [curve[str(c)] for c in range(m + 1, m + p + 1) if c in have]
            if m % p == 0 and len(window) == p:
                checks.append(curve[str(m)] * (1 + tolerance) < min(window))
        if len(checks) >= 2 and sum(checks) >= share * len(checks):
            return p
    return 1


def off_step_penalty(curve: dict[str, float], step: int) -> float:
    """How much slower an off-step count runs than the line through its neighbouring fast counts (median ratio)."""
    if step <= 1:
        return 1.0
    fast = sorted(int(c) for c in curve if int(c) % step == 0)
    ratios = []
    for c in (int(c) for c in curve):
        if c % step == 0:
            continue
        lo = max((f for f in fast if f < c), default=None)
        hi = min((f for f in fast if f > c), default=None)
        if lo is None or hi is None:
            continue
        line = curve[str(lo)] + (curve[str(hi)] - curve[str(lo)]) * (c - lo) / (hi - lo)
        ratios.append(curve[str(c)] / line)
    return round(float(np.median(ratios)), 4) if ratios else 1.0


def group_levels(size: int, step: int, min_keep: float, levels: int) -> list[int]:
    """The kept counts at which a group's layers are timed: multiples of ``step`` from ``min_keep`` of
    ``size`` up, thinned to at most ``levels`` (always with the smallest and ``size`` itself)."""
    lo = max(step, -(-int(np.ceil(size * min_keep)) // step) * step)
    fast = list(range(lo, size + 1, step)) if step <= size else []
    if size not in fast:
        fast.append(size)
    if len(fast) > levels:
        picks = np.unique(np.round(np.linspace(0, len(fast) - 1, levels)).astype(int))
        fast = [fast[i] for i in picks]
    return sorted(set(fast))


def overhead_ms(*, threads: int, runs: int, warmup: int, stat: str, spinning: bool = True, timer=None,
                precision: str = "float32", channels: tuple[int, int] = (1, 1)) -> float:
    """The cost of one run of a near-empty graph (at the table's precision): subtracted from every timed point.
    ``channels``: the gemm's (in, out), a back end's ``OVERHEAD_CHANNELS`` where 1 x 1 does not compile."""
    op = {"kind": "gemm", "act": None}
    return round((timer or time_point)(op, *channels, threads=threads, runs=runs * 4, warmup=warmup, stat=stat,
                            spinning=spinning, precision=precision), 5)


def build(ops_doc: dict[str, Any], *, threads: int, runs: int, warmup: int, stat: str = "median",
          passes: int = 1, spinning: bool = True, probe_threads: int | None = None, base_dir: str = ".",
          log=None, runtime: str = "onnxruntime", probe_channels: tuple[int, int] | None = None,
          precision: str = "float32") -> dict[str, Any]:
    """Measure everything an ``ops.json`` document asks for and return the table document.

    Steps: (1) the fixed cost of one run; (2) per op family (conv kxk, depthwise kxk, gemm) the
    staircase along each channel axis and its fast step; (3) per group the fast kept counts
    (multiples of the least common multiple of the steps of the axes it sets); (4) every
    distinct layer on the grid of its groups' counts, with large weights cold when the model's
    weights (``weight_bytes``) exceed the last-level cache; (5) the whole models listed under
    ``models`` (ONNX files beside ops.json), for calibration.

    With ``passes`` > 1 the sweeps and the grid are timed that many times over, one whole pass after
    another, and each point keeps its smallest figure: a burst of load from other work hits one
    pass, not all, and load only ever adds time. ``probe_threads`` (default ``threads``) times the
    staircase sweeps with another thread count: the steps come from the kernels' channel blocking,
    and a single thread sweeps cleanly on a machine where two threads rarely get two cores at once.
    ``runtime`` picks the back end that builds and times the single-op graphs (:func:`backend`);
    ``probe_channels`` the swept channel range (default: the back end's, else ``PROBE_CHANNELS``);
    ``precision`` the kernels timed (``"int8"``: the back end's int8 graphs; the whole models listed
    must then be its INT8 files). It is recorded in the table's target, protocol and key.
    """
    be = backend(runtime)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision not in getattr(be, "PRECISIONS", ("float32",)):
        raise ValueError(f"the {runtime} latency-table back end times float32 kernels only, not {precision}")
    if ops_doc.get("format") != OPS_FORMAT:
        raise ValueError(f"not an op list (expected 'format': '{OPS_FORMAT}')")
    if threads < 1 or runs < 1 or warmup < 0 or stat not in STATISTICS:
        raise ValueError(f"need threads >= 1, runs >= 1, warmup >= 0, stat in {sorted(STATISTICS)}")
    log = log or (lambda msg: None)
    started = time.perf_counter()
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    timing = {"threads": threads, "runs": runs, "warmup": warmup, "stat": stat, "spinning": spinning,
              "precision": precision}
    overhead = overhead_ms(**timing, timer=be.time_point, channels=getattr(be, "OVERHEAD_CHANNELS", (1, 1)))
    log(f"run overhead {overhead:.4f} ms")
    llc = last_level_cache_bytes()
    model_bytes = int(ops_doc.get("weight_bytes", 0)) // (4 if precision == "int8" else 1)  # float32 bytes listed
    cold = model_bytes > llc
    log(f"model weights {model_bytes / 2**20:.1f} MiB, last-level cache {llc / 2**20:.1f} MiB: "
        f"large weights timed {'cold' if cold else 'warm'}")

    layers, groups = ops_doc["layers"], ops_doc["groups"]
    staircase: dict[str, Any] = {}
    for layer in layers:
        fam = layer["family"]
        if fam in staircase:
            continue
        op = probe_op(layer["op"])
        axes = ("c",) if layer["op"].get("depthwise") else ("c_in", "c_out")
        entry = {}
        for axis in axes:
            probe_timing = {**timing, "threads": probe_threads or threads}
            curve = sweep(op, axis, passes=max(3, passes), timer=be.time_point,
                          counts=tuple(probe_channels or ops_doc.get("probe_channels")
                                       or getattr(be, "PROBE_CHANNELS", PROBE_CHANNELS)),
                          **probe_timing)  # cheap, and decides a lot
            step = fast_step(curve)
            entry[axis] = {"step": step, "penalty": off_step_penalty(curve, step), "ms": curve}
        staircase[fam] = entry
        log(f"staircase {fam}: " + ", ".join(f"{a} step {e['step']} (off-step x{e['penalty']})"
                                                for a, e in entry.items()))

    steps = {name: 1 for name in groups}
    layout = be.layout_step() if hasattr(be, "layout_step") else 1  # a runtime's in-model channel block
    if layout > 1:
        log(f"layout: convolution channels step on multiples of {layout} (in-model blocked layout)")
    for layer in layers:
        fam = staircase[layer["family"]]
        for axis, group in (("c_in", layer["in_group"]), ("c_out", layer["out_group"])):
            if group is not None:
                step = fam["c"]["step"] if "c" in fam else fam[axis]["step"]
                if layer["op"].get("kind", "conv") == "conv":
                    step = int(np.lcm(step, layout))
                steps[group] = int(np.lcm(steps[group], step))
    group_out = {}
    for name, g in groups.items():
        step = int(np.lcm(steps[name], g.get("partitions", 1)))
        group_out[name] = {**g, "step": step,
                           "levels": group_levels(g["size"], step, ops_doc.get("min_keep", 0.25),
                                                  ops_doc.get("levels", 8))}

    def axis_values(group, full):
        return group_out[group]["levels"] if group is not None else [full]

    ops: dict[str, dict[str, Any]] = {}
    axes: dict[str, tuple[set[int], set[int]]] = {}
    for layer in layers:  # layers of one signature share one full grid: the union of their counts
        ci = [1] if layer["op"].get("depthwise") else axis_values(layer["in_group"], layer["c_in"])
        co = axis_values(layer["out_group"], layer["c_out"])
        ops.setdefault(layer["signature"], {"op": layer["op"], "family": layer["family"], "points": {}})
        a_in, a_out = axes.setdefault(layer["signature"], (set(), set()))
        a_in.update(ci)
        a_out.update(co)
    todo = []
    for sig, (a_in, a_out) in axes.items():
        for a in sorted(a_in):
            for b in sorted(a_out):
                ops[sig]["points"][f"{a},{b}"] = None
                todo.append((sig, a, b))
    todo = list(dict.fromkeys(todo))
    for p in range(passes):
        for i, (sig, a, b) in enumerate(todo):
            ms = be.time_point(ops[sig]["op"], a, b, cold_bytes=llc if cold else 0, **timing)
            ms = round(max(ms - overhead, 1e-4), 5)
            old = ops[sig]["points"][f"{a},{b}"]
            ops[sig]["points"][f"{a},{b}"] = ms if old is None else min(old, ms)
            if (i + 1) % 100 == 0 or i + 1 == len(todo):
                log(f"pass {p + 1}/{passes}: [{i + 1}/{len(todo)}] points timed")

    models = {}
    for name, entry in ops_doc.get("models", {}).items():
        path = os.path.join(base_dir, entry.get("file", entry.get("onnx")))
        ms = be.time_model(path, entry["input_shapes"], **timing)
        models[name] = {"counts": entry["counts"], "ms": round(ms, 5)}
        log(f"model {name}: {ms:.3f} ms")

    return {"format": TABLE_FORMAT, "version": FORMAT_VERSION, "target": target_info(threads, runtime, precision),
            "protocol": {**timing, "passes": passes, "probe_threads": probe_threads or threads, "opset": OPSET,
                         "overhead_ms": overhead, "cold_weights": cold,
                         "graph": f"{be.GRAPH_INT8 if precision == 'int8' else be.GRAPH}; run overhead subtracted",
                         "seconds": round(time.perf_counter() - started, 1)},
            "staircase": staircase,
            "model": {"key": ops_doc["model"], "layers": layers, "groups": group_out, "measured": models},
            "ops": ops}


def time_model(model: bytes | str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str, spinning: bool = True, precision: str = "float32") -> float:
    """Latency (ms) of a whole ONNX model (bytes or a path) on random float32 inputs, same protocol as the
    points (an INT8 model file takes float input too: its QuantizeLinear is inside)."""
    sess = session(model, threads, spinning=spinning)
    rng = np.random.default_rng(1)
    feed = {i.name: rng.standard_normal(shape, dtype=np.float32) for i, shape in zip(sess.get_inputs(), input_shapes)}
    return timed(lambda: sess.run(None, feed), runs=runs, warmup=warmup, stat=stat)


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write ``doc`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build an edgeprune latency table on this device "
                                                 "(needs only numpy and the runtime: onnxruntime, "
                                                 "ai-edge-litert or openvino).")
    parser.add_argument("ops", help="ops.json written by 'edgeprune target ops' (ONNX files beside it)")
    parser.add_argument("--out", required=True, help="where to write the table (JSON)")
    parser.add_argument("--threads", type=int, default=2, help="the runtime's worker threads")
    parser.add_argument("--runtime", default="onnxruntime", choices=DEVICE_RUNTIMES,
                        help="the runtime to time on (litert and openvino need their lut_<runtime>.py beside this file)")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="the kernels to time: float32 or int8 (default: the precision ops.json was written for)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per point")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per point")
    parser.add_argument("--passes", type=int, default=1, help="time the whole table this many times, keep the "
                                                                 "smallest figure of each point")
    parser.add_argument("--probe-threads", type=int, default=None,
                        help="threads for the staircase sweeps (default: --threads; 1 on a busy machine)")
    parser.add_argument("--no-spinning", action="store_true",
                        help="idle worker threads block instead of spinning (a machine shared with other work)")
    parser.add_argument("--stat", default="median", choices=sorted(STATISTICS),
                        help="statistic of the timed runs (use 'min' on a machine shared with other work)")
    args = parser.parse_args(argv)
    with open(args.ops, encoding="utf-8") as f:
        ops_doc = json.load(f)
    doc = build(ops_doc, threads=args.threads, runs=args.runs, warmup=args.warmup, stat=args.stat, passes=args.passes,
                spinning=not args.no_spinning, probe_threads=args.probe_threads,
                base_dir=os.path.dirname(os.path.abspath(args.ops)), runtime=args.runtime,
                precision=args.precision or ops_doc.get("precision", "float32"),
                log=lambda msg: print(msg, file=sys.stderr, flush=True))
    write_json(doc, args.out)
    print(f"wrote {args.out}: {sum(len(o['points']) for o in doc['ops'].values())} points, "
          f"target {doc['target']['key']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
