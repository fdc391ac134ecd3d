"""Warm-up before tracing: models that build state on their first call prune cold.

Oracles: a model whose first forward builds a buffer and a grid prunes without ever having run,
its dead units go and the outputs do not change, and the caller's model is exactly as it was
(no buffer, no grid, every module's training flag); an ultralytics YOLOv8n built from its yaml
(its head makes anchors on the first call) prunes at ratio 0.3 before any forward, and ONNX
Runtime agrees with the pruned PyTorch model; exporting leaves the model's own state real tensors.
"""
from __future__ import annotations

import copy
import importlib
import os
import socket

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.export.onnx import export_onnx


class FirstCallState(nn.Module):
    """Builds a per-channel buffer and a position grid on its first call (as YOLO heads build anchors)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)
        self.grid: torch.Tensor | None = None  # a plain attribute, like ``Detect.anchors``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        if "gain" not in self._buffers:  # a lazily registered buffer over the stem's channels
            self.register_buffer("gain", torch.full((h.shape[1], 1, 1), 0.5))
        h = torch.relu(self.body(h * self.gain))
        if self.grid is None or self.grid.shape[-2:] != h.shape[-2:]:
            ys, xs = torch.meshgrid(torch.arange(h.shape[-2]), torch.arange(h.shape[-1]), indexing="ij")
            self.grid = ((ys + xs).float() / h.shape[-1])[None, None]
        return self.head(h) + self.grid


def _snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "training": {name: m.training for name, m in model.named_modules()}}


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after["training"] == before["training"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


def test_a_model_that_builds_state_on_its_first_call_prunes_cold_and_is_left_alone(tmp_path):
    torch.manual_seed(0)
    model = FirstCallState()
    model.train()
    model.stem.eval()  # mixed flags: each must come back as it was
    dead = list(range(8))  # body units nothing reads: they go first and the output stays
    with torch.no_grad():
        model.body.weight[dead] = 0
        model.body.bias[dead] = 0
        model.head.weight[:, dead] = 0
    x = torch.randn(2, 3, 12, 12)
    before = _snapshot(model)

    result = ep.prune(model, x, ratio=0.3)

    _assert_unchanged(model, before)
    assert "gain" not in dict(model.named_buffers()) and model.grid is None  # never ran
    assert result.model.body.out_channels < 16
    # the buffer the first call builds is not the caller's: its channels stay whole, and say why
    assert "built by the model's first forward" in result.skipped["stem"]
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(result.model.eval()(x), expected, rtol=1e-5, atol=1e-6)
    # the exporter traces a copy: the model keeps real tensors as its state, not the exporter's fakes
    export_onnx(result.model, x, tmp_path / "first-call.onnx")
    assert type(result.model.grid) is torch.Tensor
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), expected, rtol=1e-5, atol=1e-6)


def test_the_warmed_copy_is_what_analyze_traces():
    model = FirstCallState()
    x = torch.randn(1, 3, 8, 8)
    analysis = ep.analyze(model, x)
    assert "gain" in analysis.trace.param_dims  # the traced forward is the one every later call runs
    assert not any(r.name in ("meshgrid", "arange") for r in analysis.trace.records)
    assert {g.name for g in analysis.groups} == {"body"}
    assert "gain" not in dict(model.named_buffers()) and model.grid is None


@pytest.fixture(scope="module")
def yolo_tasks(tmp_path_factory):
    """``ultralytics.nn.tasks`` imported offline, with its settings in a temporary folder; any
    attempt to reach the network while it imports and builds a model fails the test."""
    attempts: list[str] = []

    def refuse(host, *args, **kwargs):
        attempts.append(str(host))
        raise OSError(f"network refused in tests ({host})")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_VERBOSE", "False")
        mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket, "create_connection", refuse)
        tasks = importlib.import_module("ultralytics.nn.tasks")
        torch.manual_seed(0)
        model = tasks.DetectionModel("yolov8n.yaml", verbose=False)
        assert attempts == []
        yield tasks, model
    assert attempts == [], f"ultralytics tried the network: {attempts}"


def test_yolov8n_from_its_yaml_prunes_before_any_forward_and_onnx_agrees(yolo_tasks, tmp_path):
    _, model = yolo_tasks
    detect = model.model[-1]
    assert detect.shape is None and detect.anchors.numel() == 0  # its head has never made anchors
    x = torch.rand(1, 3, 64, 64)
    before = _snapshot(model)

    result = ep.prune(model, x, ratio=0.3)

    _assert_unchanged(model, before)
    assert detect.shape is None and detect.anchors.numel() == 0
    assert result.stats["params_after"] < 0.75 * result.stats["params_before"]
    assert result.stats["groups"] > 20
    path = export_onnx(result.model, x, tmp_path / "yolov8n-pruned.onnx")  # raises unless ORT agrees
    assert path.stat().st_size > 0
    assert type(result.model.model[-1].anchors) is torch.Tensor  # the export left no tracing tensor behind
