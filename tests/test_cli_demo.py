"""``edgeprune demo`` end to end: the acceptance check of issue #7 (minutes, so marked slow;
``pytest -m slow tests/test_cli_demo.py`` runs it)."""
from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app

_register_commands()


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run also trains the CNN
def test_demo_prunes_the_mnist_cnn_to_about_half_the_latency_within_one_point(tmp_path):
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--json"], catch_exceptions=False)
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["guard"]["passed"] and summary["guard"]["drop"] <= 1.0
    assert summary["ratios"]["speedup"] >= 1.5  # ~2x on a quiet 2-core machine; latency is noisy under load
    assert (tmp_path / "demo" / "report.html").is_file() and (tmp_path / "demo" / "model.onnx").is_file()
    assert seconds < 300  # with the CNN's weights cached; the first run also trains it (about a minute)
