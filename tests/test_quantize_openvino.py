"""OpenVINO INT8 through NNCF: the compiled IR matches its fake-quant reference (NNCF's QDQ ONNX model run
unfused by ONNX Runtime) within one step, OpenVINO really runs its convolutions on integers, and
``--quantize int8 --runtime openvino`` lands ``model.int8.xml`` and is judged on it."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import openvino as ov
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app
from edgeprune.export.onnx import export_onnx
from edgeprune.quantize import CalibrationDataError, QuantizeMismatchError
from edgeprune.quantize.errors import MissingExtraError
from edgeprune.quantize.openvino import check_ir, compile_ir, int8_layers, ir_bytes, quantize_openvino, quantize_qdq
from edgeprune.quantize.reference import session
from edgeprune.run import recipe_from_mapping
from edgeprune.targets import lut_builder, lut_openvino
from tests.test_int8_tables import OPS, _reference
from tests.test_quantize_edge import ResidualCNN

_register_commands()


def _small_cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


MODELS = {"cnn": (_small_cnn, 2), "residual": (ResidualCNN, 5)}  # factory, convolutions


def _make(name, tmp):
    """(FP32 ONNX, calibration batches) of a seeded test model with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = MODELS[name][0]().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    fp32 = export_onnx(model, torch.randn(1, 3, 16, 16), tmp / "fp32.onnx", dynamic_batch=True)
    rng = np.random.default_rng(0)
    return fp32, [rng.standard_normal((8, 3, 16, 16)).astype(np.float32) for _ in range(2)]


@pytest.fixture(scope="module", params=sorted(MODELS))
def quantized(request, tmp_path_factory):
    """(name, FP32 ONNX, calibration batches, the NNCF INT8 IR record) for each test model."""
    tmp = tmp_path_factory.mktemp(request.param)
    fp32, batches = _make(request.param, tmp)
    return request.param, fp32, batches, quantize_openvino(fp32, tmp / "model.int8.xml", batches)


def _input(fp32):
    from edgeprune.quantize.ort import single_input

    return single_input(onnx.load(str(fp32)))[0]


def test_int8_ir_matches_its_fake_quant_reference(quantized):
    name, fp32, batches, q = quantized
    assert q.path.is_file() and q.path.with_suffix(".bin").is_file()
    assert q.parity.samples == 16 and q.parity.within_one_step >= 0.95 and q.parity.max_steps <= 4
    assert q.parity.top1_agreement == 1.0
    assert not [p for p in q.path.parent.iterdir() if p.name.endswith(".tmp")]  # nothing staged is left
    # The check discriminates: the same model in FP32 (no quantization at all) is further from the
    # fake-quant reference than the INT8 IR is (the check reads an INT8 file, not just "some model").
    qdq = q.path.parent / "qdq.onnx"
    name = _input(fp32)
    onnx.save(quantize_qdq(onnx.load(str(fp32)), name, batches), str(qdq))  # deterministic: the same graph
    fp32_xml = q.path.parent / "fp32.xml"
    ov.save_model(ov.convert_model(str(fp32)), str(fp32_xml), compress_to_fp16=False)
    again = check_ir(compile_ir(q.path), qdq, batches, name, q.path)
    assert again.max_abs == pytest.approx(q.parity.max_abs, abs=1e-9)
    try:
        fp32_parity = check_ir(compile_ir(fp32_xml), qdq, batches, name, fp32_xml)
    except QuantizeMismatchError:
        pass  # FP32 fails the check outright
    else:
        assert fp32_parity.max_abs > 3 * q.parity.max_abs, (fp32_parity, q.parity)


def test_the_reference_agrees_with_onnx_numpy_evaluator(quantized):
    """ORT with optimisations off is checked against ONNX's own pure-numpy evaluator of the QDQ graph."""
    from onnx.reference import ReferenceEvaluator

    _, fp32, batches, q = quantized
    name = _input(fp32)
    qdq = quantize_qdq(onnx.load(str(fp32)), name, batches)
    x = batches[0]
    ours = session(_saved(qdq, q.path.parent / "ref.onnx"), fake_quant=True).run(None, {name: x})[0]
    numpy_ref = ReferenceEvaluator(qdq).run(None, {name: x})[0]
    # the output is float (NNCF does not quantize the last Gemm): float32 summation order only
    assert np.abs(ours - numpy_ref).max() <= 1e-4 * max(1.0, float(np.abs(numpy_ref).max()))


def test_openvino_runs_the_convolutions_on_int8(quantized):
    name, fp32, _, q = quantized
    convs = MODELS[name][1]
    assert q.int8_layers.get("Convolution") == convs and q.int8_layers.get("FullyConnected") == 1
    assert q.float_layers == []
    # the same function on the FP32 IR finds no integer layer: it reads the compiled graph, not a label
    fp32_xml = q.path.parent / "fp32-only.xml"
    ov.save_model(ov.convert_model(str(fp32)), str(fp32_xml), compress_to_fp16=False)
    ints, floats = int8_layers(compile_ir(fp32_xml))
    assert ints == {} and len(floats) == convs + 1
    # the weights are stored as int8: the .bin is under a third of the FP32 weights
    assert q.path.with_suffix(".bin").stat().st_size < 0.35 * fp32_xml.with_suffix(".bin").stat().st_size
    assert q.bytes == ir_bytes(q.path)


def test_calibration_is_reproducible_and_bad_batches_are_refused(tmp_path):
    fp32, batches = _make("cnn", tmp_path)
    q = quantize_openvino(fp32, tmp_path / "first.int8.xml", batches)
    again = quantize_openvino(fp32, tmp_path / "again.int8.xml", batches)
    assert again.path.with_suffix(".bin").read_bytes() == q.path.with_suffix(".bin").read_bytes()
    with pytest.raises(CalibrationDataError, match=f"input '{_input(fp32)}' takes"):
        quantize_openvino(fp32, tmp_path / "bad.int8.xml", [np.zeros((2, 1, 16, 16), np.float32)])
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.glob(".bad*"))


def test_missing_nncf_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)  # importlib.util.find_spec("nncf") is now None
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeprune\[openvino\]'"):
        quantize_openvino(tmp_path / "any.onnx", tmp_path / "m.int8.xml", [np.zeros((1, 3), np.float32)])
    assert not list(tmp_path.iterdir())


def test_recipe_takes_int8_on_openvino():
    recipe = recipe_from_mapping({"model": "digits", "data": "digits", "quantize": "int8", "runtime": "openvino",
                                  "target": ["macs=0.5"]})
    assert recipe.quantize == "int8" and recipe.runtime == "openvino"


def _ir_accuracy(path, x, y):
    compiled = compile_ir(path)
    return 100.0 * float((compiled.create_infer_request().infer([x])[0].argmax(1) == y).mean())


def _prune_int8_openvino(task, out, *extra):
    result = CliRunner().invoke(app, ["prune", task, "--data", task, "--target", "macs=0.5", "--quantize", "int8",
                                      "--runtime", "openvino", *extra, "--out", str(out), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _check_run(task, out, summary):
    from edgeprune.tasks import get_task

    int8 = summary["int8"]
    assert int8["runtime"] == "openvino" and int8["artifact"] == "model.int8.xml"
    assert summary["guard"]["judged_on"] == "model.int8.xml" and int8["latency"]["runtime"] == "openvino"
    stages = int8["stages"]
    assert set(stages) == {"dense_fp32", "pruned_fp32", "pruned_int8", "dense_int8"}
    assert all(s["latency_ms"] > 0 for s in stages.values())
    splits = get_task(task).data()
    by_hand = _ir_accuracy(out / "model.int8.xml", splits.x_val.numpy(), splits.y_val.numpy())
    assert stages["pruned_int8"]["accuracy"] == pytest.approx(by_hand)  # the file's own accuracy
    assert stages["pruned_int8"]["bytes"] == ir_bytes(out / "model.int8.xml")
    assert summary["guard"]["drop"] == pytest.approx(summary["before"]["accuracy"] - by_hand)
    return stages


def test_digits_run_lands_the_int8_ir_and_is_judged_on_it(tmp_path):
    out = tmp_path / "digits"
    summary = _prune_int8_openvino("digits", out, "--max-drop", "5", "--calibration-batches", "2", "--epochs", "1",
                                   "--latency-runs", "5", "--threads", "1", "--no-curve")
    stages = _check_run("digits", out, summary)
    # a small MLP: the IR's .xml (graph text, larger with the quantize ops) weighs as much as its weights
    assert stages["pruned_int8"]["bytes"] < stages["pruned_fp32"]["bytes"]
    assert (out / "model.int8.bin").stat().st_size < 0.35 * (out / "model.bin").stat().st_size  # int8 weights
    assert "OpenVINO" in (out / "report.html").read_text()


@pytest.mark.slow  # minutes on two cores; benchmarks/int8.py --runtime openvino runs mnist the same way
def test_mnist_half_macs_int8_on_openvino(tmp_path):
    out = tmp_path / "mnist"
    summary = _prune_int8_openvino("mnist", out, "--max-drop", "1")
    _check_run("mnist", out, summary)
    assert ir_bytes(out / "model.int8.xml") <= 0.35 * os.path.getsize(out / "model.onnx")


@pytest.mark.parametrize("op, c_in, c_out", OPS)
def test_openvino_int8_point_matches_the_numpy_int8_conv_and_runs_on_int8(op, c_in, c_out):
    """The int8 latency-table point OpenVINO times is an int8 kernel computing the int8 op."""
    q = lut_builder.int8_params(op, c_in, c_out, seed=3, activations="uint8")
    request = lut_openvino.compiled(lut_openvino.op_model_bytes(op, c_in, c_out, seed=3, precision="int8"), 1)
    ints, floats = int8_layers(request.get_compiled_model())
    assert sum(ints.values()) == 1 and floats == []  # the one conv / gemm runs on u8 x i8
    shape = tuple(request.model_inputs[0].get_shape())
    x = lut_builder.random_input(shape, "int8", "uint8")  # NCHW (conv) or (rows, c_in) (gemm)
    y = request.infer([x])[0]
    nhwc = (lambda a: a.transpose(0, 2, 3, 1)) if op["kind"] == "conv" else (lambda a: a)
    assert y.dtype == np.uint8
    assert np.abs(nhwc(y).astype(np.int64) - _reference(op, q, nhwc(x))).max() <= 1  # within one step
    assert len(np.unique(y)) > 3  # the output's range is used, not saturated
    assert lut_openvino.time_point(op, c_in, c_out, threads=1, runs=2, warmup=1, precision="int8") > 0


def test_an_openvino_int8_table_builds_on_int8_points_and_int8_irs():
    from edgeprune.targets import LatencyPredictor, TableConfig, build_table
    from tests.test_int8_tables import QUICK, _tiny

    model, x = _tiny()
    table = build_table(model, x, TableConfig(runtime="openvino", precision="int8", **QUICK))
    assert table.precision == "int8" and table.target["key"].endswith("|int8")
    assert "OpenVINO" in table.protocol["graph"] and "uint8" in table.protocol["graph"]
    assert set(table.measured) == {"dense", "uniform-0.5"} and all(m["ms"] > 0 for m in table.measured.values())
    assert LatencyPredictor(table).dense_ms() > 0


def _saved(model, path):
    onnx.save(model, str(path))
    return path
