"""``edgeprune prune`` end to end on the built-in digits task, through the CLI, and the commands
that read its run directory (export, report)."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app

_register_commands()
RUN_FLAGS = ["--data", "digits", "--target", "params=0.5", "--max-drop", "5", "--epochs", "1",
             "--latency-runs", "5", "--threads", "1"]
SUMMARY_KEYS = {"accuracy", "macs", "params", "bytes", "latency_ms"}


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = invoke(["prune", "digits", *RUN_FLAGS, "--out", str(out), "--json"])
    return out, result


def test_prune_writes_a_complete_run_directory(run):
    out, result = run
    assert result.exit_code == 0, result.output
    for name in ("COMPLETE", "plan.json", "model.onnx", "metrics.json", "run.log", "report.html", "recipe.json",
                 "model.edgeprune/edgeprune.json", "model.edgeprune/model.safetensors"):
        assert (out / name).is_file(), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging directory left
    log = (out / "run.log").read_text()
    assert "step: choose plan" in log and "status: ok" in log


def test_json_summary_has_before_and_after_figures(run):
    out, result = run
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok" and summary["exit_code"] == 0 and summary["run_dir"] == str(out)
    before, after = summary["before"], summary["after"]
    assert SUMMARY_KEYS <= set(before) and SUMMARY_KEYS <= set(after)
    assert 90 < before["accuracy"] <= 100 and 0 < after["accuracy"] <= 100
    assert after["params"] <= 0.5 * before["params"] and after["macs"] < before["macs"]
    assert after["bytes"] < before["bytes"] and after["latency_ms"] > 0
    assert summary["targets"][0]["met"] and summary["guard"]["passed"]
    assert summary["guard"]["drop"] == pytest.approx(before["accuracy"] - after["accuracy"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before"] == before and metrics["layers"] and metrics["search"]["trials"]


def test_onnx_file_runs_in_onnxruntime_and_matches_the_saved_model(run):
    out, _ = run
    from edgeprune.run.reload import load_run_model

    model, example = load_run_model(out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 64)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # the reloaded model is the pruned one: its accuracy is the one the run recorded
    from edgeprune.tasks import get_task

    metrics = json.loads((out / "metrics.json").read_text())
    assert get_task("digits").evaluate(model) == pytest.approx(metrics["after"]["accuracy"])


def test_plan_replays_on_a_fresh_model(run):
    out, _ = run
    import edgeprune
    from edgeprune.plan import Plan
    from edgeprune.tasks import get_task

    pruned = edgeprune.apply_plan(get_task("digits").build(0), Plan.load(out / "plan.json"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(p.numel() for p in pruned.parameters()) == metrics["after"]["params"]


def test_an_existing_run_is_kept_without_force(run):
    out, _ = run
    before = (out / "metrics.json").read_text()
    result = invoke(["prune", "digits", *RUN_FLAGS, "--out", str(out)])
    assert result.exit_code == 2 and "--force" in result.output
    assert (out / "metrics.json").read_text() == before


def test_export_and_report_commands_read_the_run(run, tmp_path):
    out, _ = run
    result = invoke(["export", str(out), "--format", "onnx", "--dynamic-batch", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 64), np.float32)})
    assert got.shape == (3, 10)
    (out / "report.html").unlink()
    result = invoke(["report", str(out)])
    assert result.exit_code == 0 and (out / "report.html").is_file()
    assert invoke(["export", str(tmp_path), "--format", "onnx"]).exit_code == 2  # not a run directory
    assert invoke(["export", str(out), "--format", "tensorrt"]).exit_code == 2  # (tflite is a format now)


def test_config_file_runs_like_flags(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: digits\ndata: digits\ntarget: {params: 0.6}\nepochs: 0\nlatency-runs: 3\n"
                      "threads: 1\ncurve: false\n")
    result = invoke(["prune", "--config", str(recipe), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["after"]["params"] <= 0.6 * summary["before"]["params"]
    recorded = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recorded["target"] == ["params=0.6"] and recorded["epochs"] == 0



def test_the_report_curve_cuts_with_a_data_driven_criterion_on_the_run_data():
    # the curve's one-shot cuts score with the run's criterion: activation statistics need the run's data too
    from edgeprune.run.recipe import RunRecipe
    from edgeprune.run.search import CURVE_RATIOS, curve
    from edgeprune.tasks import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).eval()
    data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(2)]
    trials = curve(model, data[0][0][:1], RunRecipe(model="m", criterion="activation"), lambda m: evaluate(m, data),
                   data=data)
    assert [t.ratio for t in trials] == list(CURVE_RATIOS)
    import edgeprune as ep

    want = ep.prune(model, data[0][0][:1], CURVE_RATIOS[-1], criterion="activation", data=data)  # the same cut, directly
    assert trials[-1].params == sum(p.numel() for p in want.model.parameters())
    assert trials[-1].accuracy == pytest.approx(evaluate(want.model, data))
