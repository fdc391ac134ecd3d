"""Model, data and evaluation specs through ``edgeprune prune``: a model factory in a file, an
image folder (split for validation), loaders from a function, and a custom evaluation function."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app

_register_commands()
QUICK = ["--epochs", "1", "--latency-runs", "3", "--threads", "1", "--no-curve", "--json"]
USER_CODE = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset

    def small_cnn():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))

    def loaders():
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(48, 3, 16, 16, generator=g), torch.randint(0, 2, (48,), generator=g)
        return DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8), DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)

    CALLS = []

    def always_fifty(model, loader):
        CALLS.append(1)
        return 50.0
''')


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "user_code.py"
    path.write_text(USER_CODE)
    return path


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_image_folder_with_a_model_from_a_file(tmp_path, user_file):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    out = tmp_path / "run"
    result = invoke(["prune", f"{user_file}:small_cnn", "--data", str(tmp_path / "images"), "--input-shape",
                     "1,3,16,16", "--target", "macs=0.5", *QUICK, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["after"]["macs"] <= 0.5 * summary["before"]["macs"]
    assert 0 <= summary["after"]["accuracy"] <= 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["profiles"]["before"]["input_shapes"] == [[1, 3, 16, 16]]  # resized to the model's input


def test_loaders_and_evaluation_from_functions(tmp_path, user_file):
    out = tmp_path / "run"
    result = invoke(["prune", f"{user_file}:small_cnn", "--data", f"{user_file}:loaders",
                     "--evaluate", f"{user_file}:always_fifty", "--target", "params=0.5", *QUICK, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["before"]["accuracy"] == summary["after"]["accuracy"] == 50.0
    assert summary["after"]["params"] <= 0.5 * summary["before"]["params"]
    assert json.loads((out / "metrics.json").read_text())["metric"] == "score"


def test_data_function_returning_something_else_is_refused(tmp_path, user_file):
    result = invoke(["prune", f"{user_file}:small_cnn", "--data", f"{user_file}:small_cnn",
                     "--target", "params=0.5", *QUICK, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "expected (train_loader, val_loader)" in json.loads(result.stdout)["message"]
