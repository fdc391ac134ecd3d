"""The OpenVINO back end of ``lut_builder``: the same single-op ONNX graphs the ONNX Runtime back end
writes, compiled by OpenVINO's CPU plug-in from memory and timed there. Needs only ``openvino`` and
numpy on the device.

Compiled as ``edgeprune.runtimes.openvino`` compiles whole models (``INFERENCE_PRECISION_HINT: f32``,
``INFERENCE_NUM_THREADS``, ``NUM_STREAMS: 1``, ``PERFORMANCE_HINT: LATENCY``): on CPUs with AVX-512
BF16 OpenVINO's own default precision is bf16, and a table must time what the artifact runs.
Float32 kernels only: OpenVINO's INT8 files (``edgeprune.quantize.openvino``, NNCF) have no int8
single-op points yet, so an int8 table is refused here by name.
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
_compiled: dict = {}  # small ops compiled once per process (``lut_builder.cached``)
GRAPH = "Conv(+bias) or Gemm ONNX graph compiled by OpenVINO (f32), random weights, batch 1"


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


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0, precision: str = "float32") -> float:
    """Latency (ms) of one op at one channel count (``lut_builder.time_point``'s protocol; ``spinning``
    is ONNX Runtime's setting and ignored here)."""
    if precision != "float32":
        raise ValueError(f"the OpenVINO latency-table back end times float32 kernels only, not {precision}")
    copies = core.cold_copies(core.weight_bytes(op, c_in, c_out), cold_bytes)
    wb = core.weight_bytes(op, c_in, c_out)
    requests = [core.cached(_compiled, (repr(op), c_in, c_out, k, threads), wb,
                            lambda k=k: compiled(core.conv_model_bytes(op, c_in, c_out, seed=k), threads))
                for k in range(copies)]
    feed = _inputs(requests[0], np.random.default_rng(1))
    turn = itertools.cycle(requests)
    return core.timed(lambda: next(turn).infer(feed), runs=runs, warmup=warmup * copies, stat=stat)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, precision: str = "float32") -> float:
    """Latency (ms) of a whole OpenVINO IR (or ONNX) model on random inputs, same protocol as the points."""
    request = compiled(path, threads)
    feed = _inputs(request, np.random.default_rng(1), input_shapes)
    return core.timed(lambda: request.infer(feed), runs=runs, warmup=warmup, stat=stat)
