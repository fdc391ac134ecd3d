"""``edgeprune prune --kind weights``, ``--kind 2:4`` and ``--kind blocks`` end to end, and ``edgeprune analyze``."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app

_register_commands()
QUICK = ["--data", "digits", "--epochs", "1", "--latency-runs", "3", "--threads", "1"]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.mark.parametrize("kind, target, sparsity", [("weights", ["--target", "sparsity=0.8"], 0.8),
                                                    ("2:4", [], 0.5)])
def test_sparse_kinds_write_a_checked_sparse_onnx_file(tmp_path, kind, target, sparsity):
    out = tmp_path / "run"
    result = invoke(["prune", "digits", "--kind", kind, *target, *QUICK, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    before, after = summary["before"], summary["after"]
    assert after["macs"] == before["macs"]  # masks do not shrink tensors
    assert after["params"] < before["params"]
    assert after["onnx_bytes"] < before["onnx_bytes"]  # the sparse file is what shrinks
    dense, sparse = out / "model.onnx", out / "model.sparse.onnx"
    assert sparse.stat().st_size < dense.stat().st_size
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    outputs = []
    for path in (dense, sparse):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("dense kernels" in n for n in metrics["notes"])
    assert metrics["search"]["ratio"] == pytest.approx(sparsity, abs=0.01)  # of the pruned tensors
    pruned_layers = [row for row in metrics["layers"] if row["kept_weights"] < 1]
    assert pruned_layers and all(row["kept_weights"] == pytest.approx(1 - sparsity, abs=0.02) for row in pruned_layers)
    from edgeprune.run.reload import load_run_model

    model, _ = load_run_model(out)  # the saved masked model reloads with its zeros
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), outputs[0], rtol=1e-4, atol=1e-5)


def test_analyze_lists_groups_and_what_was_left_whole(tmp_path):
    result = invoke(["analyze", "digits", "--json", "--out", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    assert {g["name"]: g["size"] for g in analysis["groups"]} == {"fc1": 128, "fc2": 64}
    assert "fc3" in analysis["skipped"] and "output" in analysis["skipped"]["fc3"]
    assert json.loads((tmp_path / "a.json").read_text()) == analysis
    table = invoke(["analyze", "digits"])
    assert table.exit_code == 0 and "fc1" in table.stdout and "left whole" in table.stdout


def test_kind_blocks_drops_whole_blocks_reports_them_and_the_run_reloads(tmp_path):
    out = tmp_path / "run"
    result = invoke(["prune", "mnist-vit", "--data", "mnist-vit", "--kind", "blocks", "--target", "macs=0.8",
                     "--epochs", "0", "--latency-runs", "3", "--threads", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["after"]["macs"] <= 0.8 * summary["before"]["macs"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["kind"] == "blocks" and len(plan["blocks"]) == 1
    assert f"{plan['blocks'][0]} (Block Influence" in (out / "report.html").read_text()
    from edgeprune.run.reload import load_run_model

    model, _ = load_run_model(out)
    assert isinstance(model.get_submodule(plan["blocks"][0]), torch.nn.Identity)


def test_analyze_lists_the_heads_and_the_droppable_blocks_of_a_transformer():
    result = invoke(["analyze", "mnist-vit", "--json"])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    heads = {g["name"]: (g["size"], g["unit"]) for g in analysis["groups"] if g["name"].endswith("attn.qkv")}
    assert heads == {f"blocks.{i}.attn.qkv": (4, 16) for i in range(4)}
    assert analysis["blocks"] == [f"blocks.{i}" for i in range(4)]
    assert invoke(["analyze", "digits", "--json"]).exit_code == 0
    table = invoke(["analyze", "mnist-vit"])
    assert "residual blocks that --kind blocks can drop: 4" in table.stdout


def test_analyze_with_data_scans_sensitivity(tmp_path):
    result = invoke(["analyze", "digits", "--data", "digits", "--json"])
    assert result.exit_code == 0, result.output
    sens = json.loads(result.stdout)["sensitivity"]
    assert set(sens["curves"]) == {"fc1", "fc2"}
    for points in sens["curves"].values():
        assert points[0] == [0.0, sens["base"]] and len(points) > 3
        assert points[-1][1] < sens["base"]  # pruning 90% of a layer costs accuracy
    table = invoke(["analyze", "digits", "--data", "digits"])
    assert table.exit_code == 0 and "sensitivity" in table.stdout


@pytest.mark.parametrize("strategy", ["sensitivity", "iterative"])
def test_data_driven_strategies_run_end_to_end(tmp_path, strategy):
    out = tmp_path / "run"
    result = invoke(["prune", "digits", "--strategy", strategy, "--target", "params=0.6", "--no-curve", *QUICK,
                     "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["after"]["params"] <= 0.6 * summary["before"]["params"] and summary["targets"][0]["met"]
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.html").read_text()
    if strategy == "sensitivity":
        assert set(metrics["sensitivity"]["curves"]) == {"fc1", "fc2"} and "Sensitivity" in report
    else:  # iterative fine-tunes between its steps; the run does not fine-tune again
        assert metrics["after"]["accuracy_before_finetune"] is None and metrics["finetune"]["steps"] == 0
        assert "done by the iterative strategy" in (out / "run.log").read_text()


def test_weight_kinds_take_gradient_criteria_and_refuse_those_without_a_per_weight_form(tmp_path):
    out = tmp_path / "run"
    result = invoke(["prune", "digits", "--kind", "weights", "--target", "sparsity=0.7", "--criterion", "taylor",
                     *QUICK, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["meta"]["criterion"] == "taylor"
    bad = invoke(["prune", "digits", "--kind", "weights", "--target", "sparsity=0.7", "--criterion", "bn", *QUICK,
                  "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "no per-weight form" in " ".join(bad.output.split())
