"""The LiteRT back end of ``lut_builder``: single-op ``.tflite`` graphs written with the schema that
``ai-edge-litert`` ships, timed in its interpreter (XNNPACK). Needs only ``ai-edge-litert`` and
numpy (its ``flatbuffers`` dependency comes with it): no torch, no TensorFlow, no converter.

Copy it to the device beside ``lut_builder.py`` (``edgeprune target ops MODEL --runtime litert``
writes both) and run ``python lut_builder.py ops.json --runtime litert --out table.json``.

Each (op, c_in, c_out) point is one graph in LiteRT's layout (NHWC activations, OHWI filters,
``1HWC`` depthwise filters), ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` with the
activation fused as the converter fuses it. TFLite pads only ``SAME`` or ``VALID``: an op with any
padding is timed ``SAME`` (the same output size for the odd kernels CNNs use; at stride 2 SAME
pads the bottom/right where PyTorch pads both sides, one row of difference), without it ``VALID``.
The protocol (warm-up, timed runs, statistic, cold weights) is ``lut_builder``'s.

``precision="int8"``: the same ops as litert-torch's PT2E path writes them (int8 activations, one
scale and zero point per tensor; int8 filters with one scale per output channel, quantized
dimension 0, a depthwise filter's 3; int32 bias at ``input_scale * filter_scale``; op versions 3,
3 and 5 as the converter writes them), so XNNPACK runs its int8 (QS8) kernels. The tensors are
``lut_builder.int8_params``'s with ``activations="int8"``.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

if __package__:
    from . import lut_builder as core
else:  # copied to a device beside lut_builder.py
    import lut_builder as core

MODEL_SUFFIX = ".tflite"
PRECISIONS = ("float32", "int8")
_INT8_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 5}  # as litert-torch writes them
_interpreters: dict = {}  # small ops compiled once per process (``lut_builder.cached``)
GRAPH = "CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (fused activation), NHWC, random weights, batch 1"
GRAPH_INT8 = ("int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (int8 activations per tensor, int8 filters per "
              "output channel, int32 bias, fused activation), NHWC, random weights, batch 1")


def runtime_version() -> str:
    """The installed ``ai-edge-litert`` version."""
    from importlib import metadata

    return metadata.version("ai-edge-litert")


def op_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0, precision: str = "float32") -> bytes:
    """One serialized ``.tflite`` model of ``op`` (an ``ops.json`` entry, see ``lut_builder``), with
    float32 or int8 kernels (``precision``).

    Returns:
        The flatbuffer bytes, loadable by ``ai_edge_litert.interpreter.Interpreter(model_content=...)``.
    """
    from ai_edge_litert import schema_py_generated as s
    import flatbuffers

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    int8 = precision == "int8"
    q = core.int8_params(op, c_in, c_out, seed, "int8") if int8 else None
    rng = np.random.default_rng(seed)
    model = s.ModelT()
    model.version, model.description, model.buffers = 3, b"edgeprune_lut", [s.BufferT()]  # buffer 0: empty
    graph = s.SubGraphT()
    graph.tensors, graph.operators = [], []

    types = {"<f4": s.TensorType.FLOAT32, "i1": s.TensorType.INT8, "<i4": s.TensorType.INT32}

    def tensor(name: str, shape: tuple[int, ...], data: np.ndarray | None = None, dtype: str = "<f4",
               scale=None, zero=None, dim: int = 0) -> int:
        buf = s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), np.uint8)
        model.buffers.append(buf)
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), types[dtype], len(model.buffers) - 1
        if scale is not None:
            qp = s.QuantizationParametersT()
            qp.scale = [float(v) for v in np.atleast_1d(scale)]
            qp.zeroPoint = [int(v) for v in np.atleast_1d(zero)]
            qp.quantizedDimension = dim
            t.quantization = qp
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def weights(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.05

    def act_tensor(name: str, shape: tuple[int, ...], side: str) -> int:
        if not int8:
            return tensor(name, shape)
        return tensor(name, shape, dtype="i1", scale=q[f"{side}_scale"], zero=q[f"{side}_zero"])

    def filt_and_bias(shape: tuple[int, ...], layout: tuple[int, ...], dim: int) -> list[int]:
        """Filter (``shape``, from PyTorch's layout by ``layout``) and bias: float, or int8 / int32 per channel."""
        if not int8:
            return [tensor("w", shape, weights(*shape)), tensor("b", (c_out,), weights(c_out))]
        zeros = np.zeros(c_out, np.int64)
        return [tensor("w", shape, q["w"].transpose(layout), "i1", q["w_scale"], zeros, dim),
                tensor("b", (c_out,), q["b"], "<i4", q["x_scale"] * q["w_scale"], zeros, 0)]

    act = {"relu": s.ActivationFunctionType.RELU, "relu6": s.ActivationFunctionType.RELU6,
           None: s.ActivationFunctionType.NONE}
    if op.get("act") not in act:
        raise ValueError(f"unknown activation {op.get('act')!r} (expected 'relu', 'relu6' or null)")
    if op["kind"] == "gemm":
        rows = int(op.get("hw", [1, 1])[0])
        x = act_tensor("x", (rows, c_in), "x")
        ins = [x, *filt_and_bias((c_out, c_in), (0, 1), 0)]
        y = act_tensor("y", (rows, c_out), "y")
        code, options = s.BuiltinOperator.FULLY_CONNECTED, s.FullyConnectedOptionsT()
        kind = s.BuiltinOptions.FullyConnectedOptions
    elif op["kind"] == "conv":
        (kh, kw), (sh, sw) = op["kernel"], op["stride"]
        dh, dw = op.get("dilation", [1, 1])
        h, w = op["hw"]
        same = any(op["pads"])
        oh = -(-h // sh) if same else -(-(h - dh * (kh - 1)) // sh)
        ow = -(-w // sw) if same else -(-(w - dw * (kw - 1)) // sw)
        if op.get("depthwise"):
            x = act_tensor("x", (1, h, w, c_out), "x")
            filt = filt_and_bias((1, kh, kw, c_out), (1, 2, 3, 0), 3)
            code, options = s.BuiltinOperator.DEPTHWISE_CONV_2D, s.DepthwiseConv2DOptionsT()
            options.depthMultiplier = 1
            kind = s.BuiltinOptions.DepthwiseConv2DOptions
        else:
            x = act_tensor("x", (1, h, w, c_in), "x")
            filt = filt_and_bias((c_out, kh, kw, c_in), (0, 2, 3, 1), 0)
            code, options = s.BuiltinOperator.CONV_2D, s.Conv2DOptionsT()
            kind = s.BuiltinOptions.Conv2DOptions
        ins = [x, *filt]
        y = act_tensor("y", (1, oh, ow, c_out), "y")
        options.padding = s.Padding.SAME if same else s.Padding.VALID
        options.strideH, options.strideW = sh, sw
        options.dilationHFactor, options.dilationWFactor = dh, dw
    else:
        raise ValueError(f"unknown op kind {op['kind']!r} (expected 'conv' or 'gemm')")
    options.fusedActivationFunction = act[op.get("act")]
    opcode = s.OperatorCodeT()
    opcode.builtinCode = opcode.deprecatedBuiltinCode = code
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    opcode.version = _INT8_VERSIONS[names[code]] if int8 else 1
    node = s.OperatorT()
    node.opcodeIndex, node.inputs, node.outputs = 0, ins, [y]
    node.builtinOptionsType, node.builtinOptions = kind, options
    graph.operators, graph.inputs, graph.outputs = [node], [x], [y]
    model.operatorCodes, model.subgraphs = [opcode], [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def interpreter(model: bytes | str, threads: int):
    """An ``ai_edge_litert`` interpreter (from model bytes or a path) with ``threads`` threads, allocated."""
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    interp = Interpreter(num_threads=threads, **kw)
    interp.allocate_tensors()
    return interp


def _feed(interp, rng: np.random.Generator) -> None:
    for d in interp.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):  # an int8 graph: uniform over the type's range
            info = np.iinfo(d["dtype"])
            data = rng.integers(info.min, info.max, size=d["shape"], endpoint=True)
        else:
            data = rng.standard_normal(d["shape"])
        interp.set_tensor(d["index"], data.astype(d["dtype"]))


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0, precision: str = "float32") -> float:
    """Latency (ms) of one op at one channel count and precision (``lut_builder.time_point``'s protocol;
    ``spinning`` is ONNX Runtime's setting and ignored here)."""
    wb = core.weight_bytes(op, c_in, c_out, precision)
    copies = core.cold_copies(wb, cold_bytes)
    interps = [core.cached(_interpreters, (repr(op), c_in, c_out, k, threads, precision), wb,
                           lambda k=k: interpreter(op_model_bytes(op, c_in, c_out, seed=k, precision=precision),
                                                   threads))
               for k in range(copies)]
    rng = np.random.default_rng(1)
    for interp in interps:
        _feed(interp, rng)
    turn = itertools.cycle(interps)
    return core.timed(lambda: next(turn).invoke(), runs=runs, warmup=warmup * copies, stat=stat)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, precision: str = "float32") -> float:
    """Latency (ms) of a whole ``.tflite`` model on random inputs (int8 ones for an INT8 file's int8
    input), same protocol as the points."""
    interp = interpreter(path, threads)
    _feed(interp, np.random.default_rng(1))
    return core.timed(interp.invoke, runs=runs, warmup=warmup, stat=stat)
