"""The OpenVINO back end of ``lut_builder``: the same single-op ONNX graphs the ONNX Runtime back end
writes, compiled by OpenVINO's CPU plug-in from memory and timed there. Needs only ``openvino`` and
numpy on the device.

Compiled as ``edgeprune.runtimes.openvino`` compiles whole models (``INFERENCE_PRECISION_HINT: f32``,
``INFERENCE_NUM_THREADS``, ``NUM_STREAMS: 1``, ``PERFORMANCE_HINT: LATENCY``): on CPUs with AVX-512
BF16 OpenVINO's own default precision is bf16, and a table must time what the artifact runs.
``precision="int8"``: ONNX Runtime's QDQ point (``lut_builder.qdq_model_bytes``: uint8 activations,
int8 weights per output channel, int32 bias) with its conv NCHW at the edges: OpenVINO's low-precision
transformations fold the dequantize ops into an int8 convolution (runtime precision ``u8``, as inside
an NNCF-quantized model, ``edgeprune.quantize.openvino``), where the NHWC edge transposes the ONNX
Runtime graph carries keep it in float32. The whole models of an int8 table are the run's INT8 IRs.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

if __package__:
    from . import lut_builder as core
else:  # copied to a device beside lut_builder.py
    import lut_builder as core

MODEL_SUFFIX = ".xml"
PRECISIONS = ("float32", "int8")
# the run-overhead graph's gemm (in, out): OpenVINO 2026.4 cannot compile an int8 1 x 1 FullyConnected
# ("could not append an elementwise post-op"); 1 x 2 can, and costs the same near-nothing
OVERHEAD_CHANNELS = (1, 2)
_compiled: dict = {}  # small ops compiled once per process (``lut_builder.cached``)
GRAPH = "Conv(+bias) or Gemm ONNX graph compiled by OpenVINO (f32), random weights, batch 1"
GRAPH_INT8 = ("QDQ Conv or Gemm, NCHW (uint8 activations, int8 per-channel weights, int32 bias; an int8 "
              "convolution in OpenVINO's CPU plug-in), random weights, batch 1")


def layout_step() -> int:
    """The CPU plug-in's channel block (oneDNN's blocked ``nChw8c`` / ``nChw16c`` layouts, by ISA), as
    ``lut_builder.layout_step`` for ONNX Runtime: measured here, a mobilenet_v2 plan the single-op
    table predicted at 1.9x ran at 1.26x on OpenVINO with odd widths (the benchmark's odd-width
    variant against the same cut rounded to 8 shows the step per runtime)."""
    return core.layout_step()


def runtime_version() -> str:
    """The installed ``openvino`` version."""
    from importlib import metadata

    return metadata.version("openvino")


def compiled(model: bytes | str, threads: int):
    """An OpenVINO CPU compiled model (from ONNX bytes or an IR/ONNX path) and one infer request."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    core_ = ov.Core()
    graph = core_.read_model(model) if isinstance(model, (bytes, bytearray)) else str(model)
    return core_.compile_model(graph, "CPU", config=config).create_infer_request()


def _inputs(request, rng: np.random.Generator, shapes: list[list[int]] | None = None) -> list[np.ndarray]:
    ports = request.model_inputs
    if shapes is None:
        shapes = [list(p.get_shape()) for p in ports]
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def op_model_bytes(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0, precision: str = "float32") -> bytes:
    """The point's ONNX graph: ``lut_builder.conv_model_bytes``, or for int8 its QDQ graph kept NCHW."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})")
    if precision == "int8":
        return core.qdq_model_bytes(op, c_in, c_out, seed, nhwc=False)
    return core.conv_model_bytes(op, c_in, c_out, seed=seed)


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0, precision: str = "float32") -> float:
    """Latency (ms) of one op at one channel count and precision (``lut_builder.time_point``'s protocol;
    ``spinning`` is ONNX Runtime's setting and ignored here). An int8 point runs on uint8 input."""
    wb = core.weight_bytes(op, c_in, c_out, precision)
    copies = core.cold_copies(wb, cold_bytes)
    requests = [core.cached(_compiled, (repr(op), c_in, c_out, k, threads, precision), wb,
                            lambda k=k: compiled(op_model_bytes(op, c_in, c_out, seed=k, precision=precision), threads))
                for k in range(copies)]
    if precision == "int8":
        shape = [list(p.get_shape()) for p in requests[0].model_inputs][0]
        feed = [core.random_input(tuple(shape), "int8", "uint8")]
    else:
        feed = _inputs(requests[0], np.random.default_rng(1))
    turn = itertools.cycle(requests)
    return core.timed(lambda: next(turn).infer(feed), runs=runs, warmup=warmup * copies, stat=stat)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, precision: str = "float32") -> float:
    """Latency (ms) of a whole OpenVINO IR (or ONNX) model on random inputs, same protocol as the points
    (an INT8 IR takes float input too: its quantize is inside the graph, so ``precision`` changes nothing here)."""
    request = compiled(path, threads)
    feed = _inputs(request, np.random.default_rng(1), input_shapes)
    return core.timed(lambda: request.infer(feed), runs=runs, warmup=warmup, stat=stat)
