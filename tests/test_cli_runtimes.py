"""The runtimes through the command line: ``export --format``, ``profile --runtime``, ``transfer``,
the pipeline's interleaved verdict, and the report naming what ran every latency figure."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app
from edgeprune.runtimes import get_runtime

_register_commands()
RUN_FLAGS = ["--data", "digits", "--target", "params=0.5", "--epochs", "0", "--latency-runs", "10", "--threads", "1",
             "--no-curve"]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = invoke(["prune", "digits", *RUN_FLAGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_verdict_comes_from_one_interleaved_session(run):
    m = json.loads((run / "metrics.json").read_text())
    lat = m["latency"]
    assert lat["runtime"] == "onnxruntime" and lat["threads"] == 1 and lat["precision"] == "f32" and lat["version"]
    assert m["before"]["latency_ms"] == lat["original_ms"] and m["after"]["latency_ms"] == lat["pruned_ms"]
    assert m["ratios"]["speedup"] == pytest.approx(lat["original_ms"] / lat["pruned_ms"], rel=1e-6)


@pytest.mark.parametrize("fmt,runtime", [("tflite", "litert"), ("openvino", "openvino")])
def test_export_writes_the_runtime_artifact_into_the_run(run, fmt, runtime):
    from edgeprune.run.reload import load_run_model

    result = invoke(["export", str(run), "--format", fmt])
    assert result.exit_code == 0, result.output
    rt = get_runtime(runtime)
    path = rt.artifact_path(run)
    assert result.stdout.strip() == str(path) and path.is_file()
    model, example = load_run_model(run)
    x = torch.randn(example.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.eval()(x).numpy()
    (got,) = rt.open(path, threads=1).run([x.numpy()])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_export_refuses_a_format_and_runtime_that_disagree(run):
    result = invoke(["export", str(run), "--format", "pte", "--runtime", "litert"])
    assert result.exit_code == 2 and "not the format" in " ".join(result.output.split())


def test_profile_times_the_runtime_and_says_what_ran(tmp_path):
    spec = tmp_path / "tiny.py"
    spec.write_text("import torch.nn as nn\n\ndef build():\n"
                    "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))\n")
    result = invoke(["profile", f"{spec}:build", "--input-shape", "1,3,16,16", "--runtime", "openvino",
                     "--threads", "1", "--runs", "3", "--warmup", "1", "--no-memory", "--json"])
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    lat = p["latency_runtime"]
    assert lat["runtime"] == "openvino" and lat["threads"] == 1 and lat["precision"] == "f32" and lat["runs"] == 3
    assert lat["version"] == get_runtime("openvino").version
    assert p["latency_onnx"]["version"]  # ORT's figure names its version too


def test_profile_refuses_an_unknown_runtime():
    result = invoke(["profile", "torchvision:resnet18", "--runtime", "tensorrt", "--no-memory"])
    assert result.exit_code == 2 and "unknown runtime" in " ".join(result.output.split())


def test_transfer_measures_both_models_on_each_runtime_and_the_report_shows_it(run):
    result = invoke(["transfer", str(run), "--runtimes", "onnxruntime,litert", "--threads", "1", "--rounds", "3",
                     "--runs", "3", "--json"])
    assert result.exit_code == 0, result.output
    t = json.loads(result.stdout)
    assert [r["runtime"] for r in t["rows"]] == ["onnxruntime", "litert"]
    for r in t["rows"]:
        assert r["threads"] == 1 and r["precision"] == "f32" and r["version"]
        assert max(r["parity_max_rel"].values()) <= 1e-4
        assert r["speedup"] == pytest.approx(r["original_ms"] / r["pruned_ms"])
    assert json.loads((run / "transfer.json").read_text())["rows"] == t["rows"]
    page = (run / "report.html").read_text()
    assert "Transfer across runtimes" in page and "LiteRT" in page
    v = get_runtime("onnxruntime").version
    # every latency figure names runtime, version, threads and precision: card, table row, caption, transfer rows
    assert page.count(f"ONNX Runtime {v}, 1 thread, f32") >= 3
    assert f"<td>LiteRT</td><td class=mono>{get_runtime('litert').version}</td><td class=num>1</td><td>f32</td>" in page


def test_transfer_refuses_a_missing_extra_by_name(run, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_executorch(name, *args):
        if name.split(".")[0] == "executorch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_executorch)
    result = invoke(["transfer", str(run), "--runtimes", "onnxruntime,executorch"])
    assert result.exit_code == 2 and "pip install 'edgeprune[executorch]'" in " ".join(result.output.split())


def test_prune_on_another_runtime_writes_its_artifact_and_measures_the_verdict_there(tmp_path):
    out = tmp_path / "ov"
    result = invoke(["prune", "digits", *RUN_FLAGS, "--runtime", "openvino", "--out", str(out)])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["latency"]["runtime"] == "openvino" and m["latency"]["precision"] == "f32"
    assert {"model.onnx", "model.xml", "model.bin"} <= set(m["files"])
    from edgeprune.run.reload import load_run_model

    model, example = load_run_model(out)
    with torch.no_grad():
        want = model.eval()(example).numpy()
    (got,) = get_runtime("openvino").open(out / "model.xml", threads=1).run([example.numpy()])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert f"OpenVINO {get_runtime('openvino').version}, 1 thread, f32" in (out / "report.html").read_text()


def test_prune_refuses_an_unknown_runtime_by_name(tmp_path):
    result = invoke(["prune", "digits", *RUN_FLAGS, "--runtime", "tensorrt", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown runtime" in " ".join(result.output.split())
