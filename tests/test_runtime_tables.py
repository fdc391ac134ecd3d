"""Latency tables on every runtime: LiteRT's single-op graphs compute what PyTorch computes, tables
are built and calibrated on the runtime they name, the device-side LiteRT builder runs without torch,
and a latency budget on a runtime is planned on that runtime's table and measured there."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.targets import LatencyPredictor, TableConfig, TableError, build_table, latency_model, lut_builder, write_ops
from edgeprune.targets import lut_litert

CONV = {"kind": "conv", "kernel": [3, 3], "stride": [1, 1], "pads": [1, 1, 1, 1], "dilation": [1, 1], "hw": [9, 9],
        "act": "relu"}


def _run_tflite(data: bytes, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run a single-op .tflite on ``x``; also return its constant tensors (weights, bias) in order."""
    from ai_edge_litert import schema_py_generated as s

    interp = lut_litert.interpreter(data, threads=1)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    model = s.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    consts = [np.frombuffer(bytes(model.buffers[t.buffer].data), np.float32).reshape(t.shape)
              for t in graph.tensors if model.buffers[t.buffer].data is not None]
    return y, consts


@pytest.mark.parametrize("op, c_in, c_out", [
    (CONV, 5, 7),
    ({**CONV, "stride": [2, 2], "act": "relu6"}, 4, 6),
    ({**CONV, "kernel": [1, 1], "pads": [0, 0, 0, 0], "act": None}, 6, 3),
    ({**CONV, "depthwise": True}, 1, 8),
    ({"kind": "gemm", "hw": [3, 1], "act": None}, 10, 4),
])
def test_litert_single_op_graph_computes_the_torch_op(op, c_in, c_out):
    data = lut_litert.op_model_bytes(op, c_in, c_out, seed=3)
    rng = np.random.default_rng(0)
    if op["kind"] == "gemm":
        x = rng.standard_normal((3, c_in), dtype=np.float32)
        y, (w, b) = _run_tflite(data, x)
        ref = F.linear(torch.from_numpy(x), torch.from_numpy(w.copy()), torch.from_numpy(b.copy()))
    else:
        channels = c_out if op.get("depthwise") else c_in
        x = rng.standard_normal((1, *op["hw"], channels), dtype=np.float32)  # NHWC
        y, (w, b) = _run_tflite(data, x)
        # OHWI -> OIHW; a depthwise 1HWC filter -> C1HW with one group per channel
        weight = torch.from_numpy(w.copy()).permute(3, 0, 1, 2) if op.get("depthwise") else \
            torch.from_numpy(w.copy()).permute(0, 3, 1, 2)
        ref = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), weight, torch.from_numpy(b.copy()),
                       stride=op["stride"], padding=op["kernel"][0] // 2 if any(op["pads"]) else 0,
                       groups=c_out if op.get("depthwise") else 1).permute(0, 2, 3, 1)
    ref = {"relu": F.relu, "relu6": F.relu6, None: lambda t: t}[op["act"]](ref)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-5)


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval(), torch.randn(1, 3, 16, 16)


QUICK = dict(threads=1, levels=2, runs=3, warmup=1, rounds=2, calibrate=(0.5,), calibrate_latency=(), probe_channels=(15, 17))


@pytest.mark.parametrize("runtime", ["litert", "openvino"])
def test_a_table_is_timed_and_calibrated_on_the_runtime_it_names(runtime, tmp_path):
    model, x = _tiny()
    table = build_table(model, x, TableConfig(runtime=runtime, **QUICK))
    assert table.runtime == runtime and table.target["key"].split("|")[1].startswith(f"{runtime}-")
    assert set(table.measured) == {"dense", "uniform-0.5"} and all(m["ms"] > 0 for m in table.measured.values())
    assert table.check_target() == []
    table.save(tmp_path / "t.json")
    again = type(table).load(tmp_path / "t.json")
    assert again.runtime == runtime and LatencyPredictor(again).dense_ms() == pytest.approx(LatencyPredictor(table).dense_ms())
    ort = json.loads(json.dumps(table.doc))
    ort["target"] = {**ort["target"], "runtime_version": "0.0"}
    assert any("runtime_version" in why for why in type(table).from_dict(ort).check_target())


def test_the_litert_device_builder_runs_with_ai_edge_litert_and_numpy_only(tmp_path):
    model, x = _tiny()
    ops = write_ops(model, x, tmp_path / "dev", TableConfig(runtime="litert", levels=2, calibrate=(0.5,),
                                                                     probe_channels=(15, 17)))
    folder = ops.parent
    assert {"lut_builder.py", "lut_litert.py", "dense.tflite", "uniform-0.5.tflite"} <= {p.name for p in folder.iterdir()}
    blocker = ("import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'edgeprune', 'onnx', 'onnxruntime'):\n"
               "            raise ImportError('blocked on the device: ' + name)\n"
               "sys.meta_path.insert(0, _Block())\n"
               "sys.argv = ['lut_builder.py', 'ops.json', '--runtime', 'litert', '--threads', '1', '--runs', '2',"
               " '--warmup', '1', '--out', 'table.json']\n"
               "sys.path.insert(0, '.')\nimport runpy\nrunpy.run_path('lut_builder.py', run_name='__main__')\n")
    subprocess.run([sys.executable, "-c", blocker], cwd=folder, check=True, capture_output=True, timeout=240,
                   env={"PATH": "/usr/bin:/bin"})
    table = __import__("edgeprune.targets", fromlist=["LatencyTable"]).LatencyTable.load(folder / "table.json")
    assert table.runtime == "litert" and set(table.measured) == {"dense", "uniform-0.5"}


def test_executorch_tables_are_built_on_the_host_only(tmp_path):
    model, x = _tiny()
    with pytest.raises(TableError, match="host only"):
        write_ops(model, x, tmp_path, TableConfig(runtime="executorch"))


@pytest.mark.slow  # benchmarks/runtimes.py builds ExecuTorch tables and verifies their plans on .pte files
def test_an_executorch_table_times_xnnpack_points_and_calibrates_on_pte_models():
    model, x = _tiny()
    table = build_table(model, x, TableConfig(runtime="executorch", **QUICK))
    assert table.runtime == "executorch" and "ExecuTorch" in table.protocol["graph"]
    assert set(table.measured) == {"dense", "uniform-0.5"} and all(m["ms"] > 0 for m in table.measured.values())


def test_a_latency_model_on_an_unknown_runtime_is_refused_by_name():
    from edgeprune.budget import BudgetError

    model, x = _tiny()
    with pytest.raises(BudgetError, match="tflm"):
        latency_model(model, x, runtime="tflm")


def test_a_latency_budget_on_litert_is_planned_on_its_table_and_measured_on_litert(monkeypatch):
    from edgeprune.budget import Budget
    from edgeprune.strategies import latency_search
    from edgeprune.strategies.latency_search import LatencySearch, MeasureConfig, prune_to_latency

    seen = []
    real = latency_search.measure_models

    def spy(models, example_inputs, **kw):
        seen.append(kw["runtime"])
        return real(models, example_inputs, **kw)

    monkeypatch.setattr(latency_search, "measure_models", spy)
    model, x = _tiny()
    predictor = LatencyPredictor(build_table(model, x, TableConfig(runtime="litert", **QUICK)))
    found = prune_to_latency(model, x, predictor, Budget(speedup=1.5, runtime="litert", threads=1),
                             LatencySearch(max_attempts=1), measure=MeasureConfig(threads=1, rounds=2, runs=2))
    assert seen == ["litert"] and found.attempts[0].measured_ms > 0
    assert "litert" in found.plan.meta["target"]
    assert found.predicted_ms <= predictor.dense_ms() / 1.5 * 1.001


def test_target_cli_names_the_runtime_and_refuses_a_device_build_for_executorch(tmp_path):
    from typer.testing import CliRunner

    from edgeprune.cli import _register_commands, app

    _register_commands()

    def text(result):  # the error box wraps lines
        return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())

    bad = CliRunner().invoke(app, ["target", "build", "mnist", "--runtime", "tflm", "--out", str(tmp_path / "t.json")])
    assert bad.exit_code == 2 and "tflm" in text(bad)
    host_only = CliRunner().invoke(app, ["target", "ops", "mnist", "--runtime", "executorch", "--out", str(tmp_path)])
    assert host_only.exit_code == 2 and "host only" in text(host_only)
    assert not (tmp_path / "ops.json").exists()
