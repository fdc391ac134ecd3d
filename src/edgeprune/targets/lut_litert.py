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
_interpreters: dict = {}  # small ops compiled once per process (``lut_builder.cached``)
GRAPH = "CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (fused activation), NHWC, random weights, batch 1"


def runtime_version() -> str:
    """The installed ``ai-edge-litert`` version."""
    from importlib import metadata

    return metadata.version("ai-edge-litert")


def op_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0) -> bytes:
    """One serialized ``.tflite`` model of ``op`` (an ``ops.json`` entry, see ``lut_builder``).

    Returns:
        The flatbuffer bytes, loadable by ``ai_edge_litert.interpreter.Interpreter(model_content=...)``.
    """
    from ai_edge_litert import schema_py_generated as s
    import flatbuffers

    rng = np.random.default_rng(seed)
    model = s.ModelT()
    model.version, model.description, model.buffers = 3, b"edgeprune_lut", [s.BufferT()]  # buffer 0: empty
    graph = s.SubGraphT()
    graph.tensors, graph.operators = [], []

    def tensor(name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> int:
        buf = s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype="<f4").tobytes(), np.uint8)
        model.buffers.append(buf)
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), s.TensorType.FLOAT32, len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def weights(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.05

    act = {"relu": s.ActivationFunctionType.RELU, "relu6": s.ActivationFunctionType.RELU6,
           None: s.ActivationFunctionType.NONE}
    if op.get("act") not in act:
        raise ValueError(f"unknown activation {op.get('act')!r} (expected 'relu', 'relu6' or null)")
    if op["kind"] == "gemm":
        rows = int(op.get("hw", [1, 1])[0])
        x = tensor("x", (rows, c_in))
        ins = [x, tensor("w", (c_out, c_in), weights(c_out, c_in)), tensor("b", (c_out,), weights(c_out))]
        y = tensor("y", (rows, c_out))
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
            x = tensor("x", (1, h, w, c_out))
            filt = tensor("w", (1, kh, kw, c_out), weights(1, kh, kw, c_out))
            code, options = s.BuiltinOperator.DEPTHWISE_CONV_2D, s.DepthwiseConv2DOptionsT()
            options.depthMultiplier = 1
            kind = s.BuiltinOptions.DepthwiseConv2DOptions
        else:
            x = tensor("x", (1, h, w, c_in))
            filt = tensor("w", (c_out, kh, kw, c_in), weights(c_out, kh, kw, c_in))
            code, options = s.BuiltinOperator.CONV_2D, s.Conv2DOptionsT()
            kind = s.BuiltinOptions.Conv2DOptions
        ins = [x, filt, tensor("b", (c_out,), weights(c_out))]
        y = tensor("y", (1, oh, ow, c_out))
        options.padding = s.Padding.SAME if same else s.Padding.VALID
        options.strideH, options.strideW = sh, sw
        options.dilationHFactor, options.dilationWFactor = dh, dw
    else:
        raise ValueError(f"unknown op kind {op['kind']!r} (expected 'conv' or 'gemm')")
    options.fusedActivationFunction = act[op.get("act")]
    opcode = s.OperatorCodeT()
    opcode.builtinCode = opcode.deprecatedBuiltinCode = code
    opcode.version = 1
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
        interp.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0) -> float:
    """Latency (ms) of one op at one channel count (``lut_builder.time_point``'s protocol; ``spinning``
    is ONNX Runtime's setting and ignored here)."""
    copies = core.cold_copies(core.weight_bytes(op, c_in, c_out), cold_bytes)
    wb = core.weight_bytes(op, c_in, c_out)
    interps = [core.cached(_interpreters, (repr(op), c_in, c_out, k, threads), wb,
                           lambda k=k: interpreter(op_model_bytes(op, c_in, c_out, seed=k), threads))
               for k in range(copies)]
    rng = np.random.default_rng(1)
    for interp in interps:
        _feed(interp, rng)
    turn = itertools.cycle(interps)
    return core.timed(lambda: next(turn).invoke(), runs=runs, warmup=warmup * copies, stat=stat)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True) -> float:
    """Latency (ms) of a whole ``.tflite`` model on random inputs, same protocol as the points."""
    interp = interpreter(path, threads)
    _feed(interp, np.random.default_rng(1))
    return core.timed(interp.invoke, runs=runs, warmup=warmup, stat=stat)
