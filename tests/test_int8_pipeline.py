"""``edgeprune prune --quantize int8``: the INT8 file lands in the run, its accuracy is the file run in
ONNX Runtime, and the guard and size targets judge that file (FP32 passing is not enough)."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app
from edgeprune.run import RecipeError, recipe_from_mapping

_register_commands()
FAST = ["--epochs", "1", "--latency-runs", "5", "--threads", "1", "--no-curve"]


def invoke(args):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def _file_accuracy(path, x, y):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return 100.0 * float((s.run(None, {s.get_inputs()[0].name: x})[0].argmax(1) == y).mean())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-int8"
    result = invoke(["prune", "digits", "--data", "digits", "--target", "macs=0.5", "--target", "size=30KB",
                     "--quantize", "int8", "--max-drop", "3", *FAST, "--out", str(out), "--json"])
    return out, result


def test_int8_run_reports_the_files_own_accuracy(digits_run):
    from edgeprune.tasks import get_task

    out, result = digits_run
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    stages = summary["int8"]["stages"]
    assert set(stages) == {"dense_fp32", "pruned_fp32", "pruned_int8", "dense_int8"}
    splits = get_task("digits").data()
    x, y = splits.x_val.numpy(), splits.y_val.numpy()
    assert stages["pruned_int8"]["accuracy"] == pytest.approx(_file_accuracy(out / "model.int8.onnx", x, y))
    assert stages["dense_fp32"]["accuracy"] == summary["before"]["accuracy"]
    assert stages["pruned_fp32"]["accuracy"] == summary["after"]["accuracy"]
    guard = summary["guard"]
    assert guard["judged_on"] == "model.int8.onnx"
    assert guard["drop"] == pytest.approx(summary["before"]["accuracy"] - stages["pruned_int8"]["accuracy"])
    assert stages["pruned_int8"]["bytes"] == os.path.getsize(out / "model.int8.onnx")
    assert stages["pruned_int8"]["bytes"] < 0.5 * stages["pruned_fp32"]["bytes"]
    assert stages["pruned_int8"]["macs"] == stages["pruned_fp32"]["macs"] == summary["after"]["macs"]
    assert all(s["latency_ms"] > 0 for s in stages.values())


def test_size_target_counts_the_int8_file(digits_run):
    out, result = digits_run
    size = next(c for c in json.loads(result.stdout)["targets"] if c["metric"] == "size")
    assert size["reached"] == os.path.getsize(out / "model.int8.onnx") and size["met"]
    assert size["judged_on"] == "model.int8.onnx"


def test_report_shows_the_int8_stages(digits_run):
    out, _ = digits_run
    page = (out / "report.html").read_text()
    assert "<h2>INT8</h2>" in page and "dense INT8 (quantize only)" in page and "judged on model.int8.onnx" in page
    metrics = json.loads((out / "metrics.json").read_text())
    assert "model.int8.onnx" in metrics["files"] and metrics["int8"]["parity"]["max_steps"] <= 1.001


def test_fp32_passes_but_int8_fails_the_guard_exit_3(tmp_path):
    # A digits MLP made sensitive to quantization, honestly: hidden unit 0 gets a bias of 1000 and
    # the next layer ignores it. FP32 outputs are unchanged, but unit 0 sets the per-tensor range of
    # that activation, so the informative units fall into one or two uint8 steps.
    spec = tmp_path / "sensitive.py"
    spec.write_text(textwrap.dedent("""
        import torch
        from edgeprune.tasks import pretrained

        def model():
            m = pretrained("digits", 0)
            with torch.no_grad():
                m.fc1.bias[0] = 1000.0
                m.fc2.weight[:, 0] = 0.0
            return m
    """))
    out = tmp_path / "run"
    result = invoke(["prune", f"{spec}:model", "--data", "digits", "--target", "macs=0.8", "--ignore", "fc1",
                     "--quantize", "int8", "--max-drop", "10", "--epochs", "0", "--latency-runs", "5",
                     "--threads", "1", "--no-curve", "--out", str(out), "--json"])
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    guard = summary["guard"]
    assert summary["status"] == "guard_failed"
    # the FP32 model passes (a one-shot cut at 0.8x MACs costs ~3 points); the INT8 file does not (~58 points)
    assert guard["fp32_drop"] <= 10 < guard["drop"]
    assert (out / "model.int8.onnx").is_file() and (out / "COMPLETE").is_file()  # the run is still written


def test_recipe_quantize_is_checked_by_name():
    assert recipe_from_mapping({"model": "digits", "data": "digits", "target": "macs=0.5",
                                "quantize": "int8"}).quantize == "int8"
    with pytest.raises(RecipeError, match="'quantize'.*int4"):
        recipe_from_mapping({"model": "digits", "data": "digits", "target": "macs=0.5", "quantize": "int4"})
    with pytest.raises(RecipeError, match="'quantize' needs --data"):
        recipe_from_mapping({"model": "digits", "target": "macs=0.5", "quantize": "int8"})
    with pytest.raises(RecipeError, match="calibration_batches"):
        recipe_from_mapping({"model": "digits", "data": "digits", "target": "macs=0.5", "quantize": "int8",
                             "calibration_batches": 0})


@pytest.mark.slow  # ~2-4 minutes on two cores; benchmarks/int8.py runs the same on mnist
def test_mnist_half_macs_int8_within_one_point(tmp_path):
    from edgeprune.tasks import get_task

    out = tmp_path / "mnist"
    result = invoke(["prune", "mnist", "--data", "mnist", "--target", "macs=0.5", "--quantize", "int8",
                     "--max-drop", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)["int8"]["stages"]
    splits = get_task("mnist").data()
    by_hand = _file_accuracy(out / "model.int8.onnx", splits.x_val.numpy(), splits.y_val.numpy())
    assert stages["pruned_int8"]["accuracy"] == pytest.approx(by_hand)
    assert os.path.getsize(out / "model.int8.onnx") <= 0.35 * os.path.getsize(out / "model.onnx")


def _litert_accuracy(path, x, y):
    from ai_edge_litert.interpreter import Interpreter

    from edgeprune.quantize.litert import run_int8_tflite

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    pred = np.concatenate([run_int8_tflite(interp, x[i:i + 1]) for i in range(len(x))]).argmax(1)
    return 100.0 * float((pred == y).mean())


@pytest.mark.parametrize("runtime, artifact", [
    ("litert", "model.int8.tflite"),
    # the same path as LiteRT's with another quantizer; benchmarks/int8.py runs ExecuTorch INT8 on three models
    pytest.param("executorch", "model.int8.pte", marks=pytest.mark.slow)])
def test_int8_for_litert_and_executorch_lands_and_is_judged_on_that_file(runtime, artifact, tmp_path):
    from edgeprune.tasks import get_task

    out = tmp_path / runtime
    result = invoke(["prune", "digits", "--data", "digits", "--target", "macs=0.5", "--quantize", "int8",
                     "--runtime", runtime, "--max-drop", "5", "--calibration-batches", "2", *FAST,
                     "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    int8 = summary["int8"]
    assert int8["runtime"] == runtime and int8["artifact"] == artifact and (out / artifact).exists()
    assert int8["latency"]["runtime"] == runtime and summary["guard"]["judged_on"] == artifact
    stages = int8["stages"]
    assert stages["pruned_int8"]["bytes"] == os.path.getsize(out / artifact)
    assert stages["pruned_int8"]["bytes"] < 0.5 * stages["pruned_fp32"]["bytes"]
    if runtime == "litert":  # the reported accuracy is the file's own, run here independently
        splits = get_task("digits").data()
        x, y = splits.x_val.numpy(), splits.y_val.numpy()
        assert stages["pruned_int8"]["accuracy"] == pytest.approx(_litert_accuracy(out / artifact, x, y))
    assert "LiteRT" in (out / "report.html").read_text() if runtime == "litert" else True
