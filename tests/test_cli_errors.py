"""The CLI's failure paths: clear messages and documented exit codes for bad input, unmet budgets
and failed guards; an interrupted or failing run leaves no run directory that looks complete."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import edgeprune.run.finetune
from edgeprune.cli import _register_commands, app
from edgeprune.run import COMPLETE, ExitCode, is_complete

_register_commands()
QUICK = ["--epochs", "1", "--latency-runs", "3", "--threads", "1", "--no-curve"]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.mark.parametrize("args, fragment", [
    (["prune", "nosuchmodel", "--target", "macs=0.5"], "unknown model 'nosuchmodel'"),
    (["prune", "torchvision:not_a_net", "--target", "macs=0.5"], "torchvision has no model"),
    (["prune", "digits", "--data", "no/such/folder", "--target", "params=0.5"], "DATA 'no/such/folder'"),
    (["prune", "digits", "--data", "digits", "--evaluate", "math:nope", "--target", "params=0.5"],
     "has no attribute 'nope'"),
    (["prune", "digits", "--target", "flops=0.5"], "unknown metric 'flops'"),
    (["prune", "digits", "--target", "size=4"], "give a unit"),
    (["prune", "digits", "--target", "sparsity=0.9"], "needs --kind weights"),
    (["prune", "digits", "--target", "params=0.5", "--strategy", "magic"], "field 'strategy'"),
    (["prune", "digits", "--target", "params=0.5", "--epochs", "-1"], "field 'epochs' must be >= 0"),
    (["prune", "digits", "--target", "params=0.5", "--reconstruct", "4"], "field 'reconstruct' needs --data"),
    (["prune", "digits", "--data", "digits", "--target", "params=0.5", "--reconstruct", "-1"],
     "field 'reconstruct' must be >= 0"),
    (["prune", "digits", "--target", "params=0.5"], "pass --out RUN_DIR"),
    (["prune", "--target", "params=0.5"], "field 'model' is required"),
    (["prune", "minilm", "--data", "minilm", "--target", "macs=0.5", "--distill"], "recovers with its own loss"),
    (["analyze", "nosuchmodel"], "unknown model"),
    (["analyze", "digits", "--input-shape", "1,a"], "--input-shape"),
])
def test_bad_input_exits_2_naming_the_cause(tmp_path, args, fragment):
    if "--out" not in args and "pass --out RUN_DIR" not in fragment:
        args = [*args, "--out", str(tmp_path / "run")] if args[0] == "prune" else args
    result = invoke(args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert fragment in " ".join(result.output.split())  # rich wraps long lines
    assert not (tmp_path / "run").exists()


def test_bad_recipe_file_exits_2_naming_the_field(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "digits"\ntarget = "params=0.5"\nepohcs = 3\n')
    result = invoke(["prune", "--config", str(recipe), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["status"] == "error" and "unknown field 'epohcs'" in error["message"]


def test_unreachable_budget_exits_3_and_writes_nothing(tmp_path):
    result = invoke(["prune", "digits", "--target", "params=50", *QUICK, "--out", str(tmp_path / "run")])
    assert result.exit_code == ExitCode.NOT_MET
    assert "cannot be met" in " ".join(result.output.split())
    assert not list(tmp_path.iterdir())


def test_failed_accuracy_guard_exits_3_and_says_so_in_the_run(tmp_path):
    out = tmp_path / "run"
    result = invoke(["prune", "digits", "--data", "digits", "--target", "params=0.05", "--max-drop", "0",
                     "--epochs", "0", "--latency-runs", "3", "--threads", "1", "--no-curve", "--out", str(out),
                     "--json"])
    assert result.exit_code == ExitCode.NOT_MET, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "guard_failed" and summary["guard"]["passed"] is False
    assert summary["guard"]["drop"] > 0
    assert is_complete(out)  # the run is whole; its status says the guard failed
    assert "accuracy guard failed" in (out / "report.html").read_text()


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt, 130), (RuntimeError("boom"), None)])
def test_interrupted_or_failing_run_leaves_no_run_directory(tmp_path, monkeypatch, error, code):
    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(edgeprune.run.finetune, "fine_tune", explode)
    out = tmp_path / "run"
    args = ["prune", "digits", "--data", "digits", "--target", "params=0.5", *QUICK, "--out", str(out)]
    if code is None:
        with pytest.raises(RuntimeError, match="boom"):
            invoke(args)
    else:
        assert invoke(args).exit_code == code
    assert list(tmp_path.iterdir()) == []  # neither the run nor its staging directory


def test_interrupt_keeps_the_previous_complete_run(tmp_path):
    from edgeprune.run import recipe_from_mapping, run_pipeline

    out = tmp_path / "run"
    recipe = recipe_from_mapping({"model": "digits", "target": "params=0.5", "latency_runs": 3, "threads": 1})
    run_pipeline(recipe, out)
    marker = (out / COMPLETE).read_text()

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(recipe, out, force=True, hooks={"profile pruned + export ONNX": stop})
    assert (out / COMPLETE).read_text() == marker and (out / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_refuses_to_replace_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke(["prune", "digits", "--target", "params=0.5", *QUICK, "--out", str(tmp_path), "--force"])
    assert result.exit_code == 2 and "not an edgeprune run directory" in " ".join(result.output.split())
    assert (tmp_path / "notes.txt").read_text() == "mine"
