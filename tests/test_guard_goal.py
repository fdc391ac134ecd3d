"""The accuracy guard is a goal: recovery keeps fine-tuning until the drop is within it (or a cap),
keeps the best weights, and only then refuses; the CLI run meets ``--max-drop`` it would have missed."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import edgeprune as ep
from edgeprune.cli import _register_commands, app
from edgeprune.recover.goal import recover_to_guard


def _scripted(scores):
    """An evaluate() that returns the next score of a script: the oracle of what recovery saw."""
    seen = iter(scores)
    return lambda model: next(seen)


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(2)]
    return model, ep.Finetune(data, epochs=1, lr=1e-3)


def test_recovery_stops_as_soon_as_the_guard_is_met():
    model, ft = _setup()
    got = recover_to_guard(model, ft, _scripted([90.0, 95.0, 98.6, 97.0]), baseline=99.0, max_drop=0.5)
    assert got.met and got.extra_epochs == 2 and got.epochs == 3  # 1 configured + 2 extra, the 4th score unread
    assert [a for _, a in got.curve] == [90.0, 95.0, 98.6] and got.accuracy == 98.6


def test_recovery_keeps_the_best_weights_and_gives_up_at_the_cap_or_without_progress():
    model, ft = _setup()
    states = []
    scores = iter([90.0, 92.0, 91.0, 91.5, 90.5])

    def evaluate(m):
        states.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(scores)

    got = recover_to_guard(model, ft, evaluate, baseline=99.0, max_drop=0.5, max_epochs=10, patience=3)
    assert not got.met and got.accuracy == 92.0 and got.extra_epochs == 4  # three epochs without progress
    assert all(torch.equal(model.state_dict()[k], states[1][k]) for k in states[1])  # the best epoch's weights
    model, ft = _setup()
    got = recover_to_guard(model, ft, _scripted([90.0, 91.0, 92.0]), baseline=99.0, max_drop=0.5, max_epochs=3)
    assert not got.met and got.epochs == 3  # the cap counts the configured epoch


def test_without_a_guard_only_the_configured_epochs_run():
    model, ft = _setup()
    got = recover_to_guard(model, ft, _scripted([80.0]), baseline=99.0, max_drop=None)
    assert got.met is None and got.epochs == 1 and got.extra_epochs == 0


@pytest.mark.slow  # a sensitivity scan and several epochs on mnist; benchmarks/guard_goal.py runs the same command
@pytest.mark.timeout(1800)
def test_cli_meets_a_guard_that_one_epoch_misses(tmp_path):
    """``--strategy sensitivity --max-drop 0.5`` on mnist at macs=0.5: one epoch ended at -1.1 points and exit 3;
    working to the guard, the run exits 0 with the guard met."""
    _register_commands()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["prune", "mnist", "--data", "mnist", "--target", "macs=0.5", "--strategy",
                                      "sensitivity", "--max-drop", "0.5", "--out", str(out), "--json",
                                      "--latency-runs", "5", "--no-curve"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["guard"]["passed"] and summary["guard"]["drop"] <= 0.5
    metrics = json.loads((out / "metrics.json").read_text())
    curve = metrics["finetune"]["curve"]
    assert curve and curve[-1][0] <= metrics["recipe"]["max_epochs"]
    assert "Recovery" in (out / "report.html").read_text()
