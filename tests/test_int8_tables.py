"""Latency tables timed with int8 kernels (issue 14): each back end's int8 single-op graph computes
the int8 convolution a numpy reference computes (within one quantization step), ONNX Runtime fuses
the QDQ graph into the int8 kernel a quantized model runs, an int8 table records its precision, and
a table of one precision is refused for a run of the other."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.budget import Budget
from edgeprune.targets import LatencyPredictor, LatencyTable, TableConfig, TableError, build_table, lut_builder
from edgeprune.targets import lut_litert

CONV = {"kind": "conv", "kernel": [3, 3], "stride": [1, 1], "pads": [1, 1, 1, 1], "dilation": [1, 1], "hw": [9, 9],
        "act": "relu"}
OPS = [(CONV, 5, 7), ({**CONV, "stride": [2, 2], "act": "relu6"}, 4, 6),
       ({**CONV, "kernel": [1, 1], "pads": [0, 0, 0, 0], "act": None}, 6, 3), ({**CONV, "depthwise": True}, 1, 8),
       ({"kind": "gemm", "hw": [3, 1], "act": None}, 10, 4)]


def _reference(op, q, x_q: np.ndarray) -> np.ndarray:
    """The int8 op in numpy/float64: dequantize, convolve, add the int32 bias, requantize and clamp.
    ``x_q`` is NHWC (conv) or (rows, c_in) (gemm); so is the result."""
    x = (x_q.astype(np.float64) - q["x_zero"]) * q["x_scale"]
    w = q["w"].astype(np.float64) * q["w_scale"].astype(np.float64).reshape(-1, *[1] * (q["w"].ndim - 1))
    b = q["b"].astype(np.float64) * q["x_scale"] * q["w_scale"].astype(np.float64)
    if op["kind"] == "gemm":
        y = x @ w.T + b
    else:
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        groups = w.shape[0] if op.get("depthwise") else 1
        y = F.conv2d(t, torch.from_numpy(w), torch.from_numpy(b), stride=op["stride"], padding=op["pads"][:2],
                     groups=groups).permute(0, 2, 3, 1).numpy()
    return np.clip(np.round(y / q["y_scale"]) + q["y_zero"], q["qmin"], q["qmax"])


def _input(op, c_in, c_out, dtype):
    shape = lut_builder._input_shape(op, c_in, c_out, "int8")
    return lut_builder.random_input(shape, "int8", dtype)


@pytest.mark.parametrize("op, c_in, c_out", OPS)
def test_onnxruntime_int8_point_matches_the_numpy_int8_conv(op, c_in, c_out):
    q = lut_builder.int8_params(op, c_in, c_out, seed=3, activations="uint8")
    # inputs below 128: ONNX Runtime's x86 U8S8 kernels add pairs of u8*s8 products in int16 (vpmaddubsw),
    # which saturates for 255 * 127 * 2 (its documented reason for reduce_range); the timing is the same
    x = np.minimum(_input(op, c_in, c_out, "uint8"), 127).astype(np.uint8)
    sess = lut_builder.session(lut_builder.qdq_model_bytes(op, c_in, c_out, seed=3), 1)
    y = sess.run(None, {"X": x})[0]
    assert y.dtype == np.uint8
    ref = _reference(op, q, x)
    assert np.abs(y.astype(np.int64) - ref).max() <= 1  # within one quantization step
    assert len(np.unique(y)) > 3  # the output's range is used, not saturated


@pytest.mark.parametrize("op, c_in, c_out", OPS)
def test_litert_int8_point_matches_the_numpy_int8_conv(op, c_in, c_out):
    q = lut_builder.int8_params(op, c_in, c_out, seed=3, activations="int8")
    x = _input(op, c_in, c_out, "int8")
    interp = lut_litert.interpreter(lut_litert.op_model_bytes(op, c_in, c_out, seed=3, precision="int8"), 1)
    assert "DELEGATE" in {o["op_name"] for o in interp._get_ops_details()}  # XNNPACK took it (its QS8 kernels)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert y.dtype == np.int8
    assert np.abs(y.astype(np.int64) - _reference(op, q, x)).max() <= 1
    assert len(np.unique(y)) > 3


def _fused_ops(model_bytes: bytes, tmp_path) -> list[str]:
    opts = lut_builder.session_options(1)
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


@pytest.mark.parametrize("op, c_in, c_out", [OPS[0], OPS[3], OPS[4]])
def test_onnxruntime_fuses_the_qdq_point_into_its_int8_kernel(op, c_in, c_out, tmp_path):
    ops = _fused_ops(lut_builder.qdq_model_bytes(op, c_in, c_out), tmp_path)
    assert ops == (["QGemm"] if op["kind"] == "gemm" else ["QLinearConv"])  # one int8 kernel, no float op


def test_the_quantized_model_runs_the_same_int8_kernel(tmp_path):
    """The point's fused kernel is the one ONNX Runtime runs for our quantizer's INT8 file."""
    from edgeprune.export.onnx import export_onnx
    from edgeprune.quantize import quantize_onnx
    from edgeprune.quantize.files import synthetic_batches

    model, x = _tiny()
    fp32 = export_onnx(model, x, tmp_path / "m.onnx", dynamic_batch=True, exporter="torchscript")
    q = quantize_onnx(fp32, tmp_path / "m.int8.onnx", synthetic_batches(x), check=False)
    ops = _fused_ops(q.path.read_bytes(), tmp_path)
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval(), torch.randn(1, 3, 16, 16)


QUICK = dict(threads=1, levels=2, runs=3, warmup=1, rounds=2, calibrate=(0.5,), calibrate_latency=(), probe_channels=(15, 17))


@pytest.fixture(scope="module")
def int8_table():
    model, x = _tiny()
    return model, x, build_table(model, x, TableConfig(precision="int8", **QUICK))


def test_an_int8_table_builds_loads_and_records_its_precision(int8_table, tmp_path):
    _, _, table = int8_table
    table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.precision == "int8" and loaded.target["key"].endswith("|int8")
    assert loaded.protocol["precision"] == "int8" and "QLinearConv" in loaded.protocol["graph"]
    assert set(loaded.measured) == {"dense", "uniform-0.5"} and all(m["ms"] > 0 for m in loaded.measured.values())
    assert LatencyPredictor(loaded).dense_ms() > 0


def test_a_table_of_one_precision_is_refused_for_a_run_of_the_other(int8_table):
    from edgeprune.strategies.latency_search import prune_to_latency

    model, x, table = int8_table
    fp32 = LatencyTable.from_dict({**table.to_dict(), "target": {**table.target, "precision": "float32"}})
    with pytest.raises(TableError, match="float32 kernels .* deployed as int8"):
        prune_to_latency(model, x, LatencyPredictor(fp32), Budget(speedup=1.5, threads=1, precision="int8"))
    with pytest.raises(TableError, match="int8 kernels .* deployed as float32"):
        prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=1.5, threads=1))
    old = table.to_dict()
    old["target"].pop("precision")  # a table written before int8 tables: float32
    assert LatencyTable.from_dict(old).precision == "float32"


@pytest.mark.slow  # ~12 s: two INT8 files quantized and timed; benchmarks/int8.py --table-precision int8 runs it whole
def test_the_int8_search_measures_int8_files(int8_table, monkeypatch):
    from edgeprune.strategies import latency_search
    from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency

    seen = []
    real = latency_search.measure_models

    def spy(models, example, **kw):
        seen.append(kw["precision"])
        return real(models, example, **kw)

    monkeypatch.setattr(latency_search, "measure_models", spy)
    model, x, table = int8_table
    found = prune_to_latency(model, x, LatencyPredictor(table), Budget(speedup=1.2, threads=1, precision="int8"),
                             LatencySearch(max_attempts=1), measure=MeasureConfig(threads=1, rounds=2, runs=2))
    assert seen == ["int8"] and found.attempts[0].measured_ms > 0


def test_an_unknown_precision_is_refused_by_name():
    # every table runtime has int8 points now (OpenVINO's: tests/test_quantize_openvino.py)
    assert TableConfig(runtime="openvino", precision="int8").precision == "int8"
    with pytest.raises(TableError, match="precision must be one of"):
        TableConfig(precision="fp16")
