"""Latency tables: the hand-written ONNX protobuf against the ``onnx`` package and PyTorch, the
standalone builder without torch, the staircase detector on known curves, and the JSON round trip.

One small table (the ``mnist`` task's CNN, few runs) is built once per module; its figures are
not checked here (``test_latency_aware_predict.py`` checks predictions against measurements).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
import torchvision
from onnx import numpy_helper

from edgeprune.graph import analyze
from edgeprune.targets import LatencyPredictor, LatencyTable, TableConfig, TableError, build_table, timed_layers
from edgeprune.targets import lut_builder
from edgeprune.targets.build import write_ops
from edgeprune.tasks import get_task

CONV = {"kind": "conv", "kernel": [3, 3], "stride": [2, 1], "pads": [1, 0, 1, 2], "dilation": [1, 1],
        "hw": [9, 7], "depthwise": False, "act": "relu"}


def _run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


@pytest.mark.parametrize("op,c_in,c_out", [
    (CONV, 5, 6),
    ({**CONV, "depthwise": True, "act": "relu6", "pads": [1, 1, 1, 1]}, 1, 8),
    ({"kind": "gemm", "act": None}, 12, 7),
    ({"kind": "gemm", "act": None, "hw": [5, 1]}, 12, 7),  # a Linear on 5 tokens
])
def test_single_op_graph_matches_onnx_package_and_torch(op, c_in, c_out):
    data = lut_builder.conv_model_bytes(op, c_in, c_out, seed=3)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)  # the onnx package parses and validates our bytes
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    got = _run(data, x)
    xt = torch.from_numpy(x)
    if op["kind"] == "gemm":
        want = F.linear(xt, w["W"], w["B"])
    else:
        pads = op["pads"]  # (top, left, bottom, right) -> F.pad takes (left, right, top, bottom)
        xt = F.pad(xt, (pads[1], pads[3], pads[0], pads[2]))
        groups = c_out if op["depthwise"] else 1
        want = F.conv2d(xt, w["W"], w["B"], stride=tuple(op["stride"]), groups=groups)
        want = torch.relu(want) if op["act"] == "relu" else want.clamp(0, 6)
    assert list(got.shape) == [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


def test_session_options_match_the_measurement_protocol(tmp_path):
    from edgeprune.measure.latency import ort_session

    path = tmp_path / "op.onnx"
    path.write_bytes(lut_builder.conv_model_bytes(CONV, 4, 4))
    ours = lut_builder.session(str(path), 2).get_session_options()
    theirs = ort_session(path, 2).get_session_options()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr


@pytest.mark.parametrize("step", [1, 4, 16])
def test_fast_step_finds_the_period_of_a_known_staircase(step):
    counts = range(*lut_builder.PROBE_CHANNELS)
    plateau = {str(c): 0.1 * (-(-c // step)) for c in counts}  # padded up to the step: flat between
    assert lut_builder.fast_step(plateau) == step
    if step > 1:  # linear in the count, with off-step counts 30% slower
        linear = {str(c): 0.01 * c * (1.0 if c % step == 0 else 1.3) for c in counts}
        assert lut_builder.fast_step(linear) == step
        assert lut_builder.off_step_penalty(linear, step) == pytest.approx(1.3, rel=0.05)


def test_group_levels_are_on_the_step_and_include_the_full_size():
    assert lut_builder.group_levels(64, 16, 0.25, 8) == [16, 32, 48, 64]
    levels = lut_builder.group_levels(512, 16, 0.25, 5)
    assert len(levels) == 5 and levels[-1] == 512 and all(c % 16 == 0 for c in levels)
    assert lut_builder.group_levels(24, 16, 0.25, 8) == [16, 24]  # the full size, even off-step


@pytest.fixture(scope="module")
def mnist_setup():
    task = get_task("mnist")
    model = task.build(seed=0)
    x = task.example_input()
    table = build_table(model, x, TableConfig(threads=1, runs=2, warmup=1, levels=3, calibrate=(0.5,), rounds=2))
    return model, x, table


def test_table_round_trips_through_json(mnist_setup, tmp_path):
    model, x, table = mnist_setup
    path = tmp_path / "table.json"
    table.save(path)
    again = LatencyTable.load(path)
    assert again.to_dict() == json.loads(json.dumps(table.to_dict()))
    assert again.target["key"] == table.target["key"] and again.target["threads"] == 1
    p1, p2 = LatencyPredictor(table), LatencyPredictor(again)
    counts = {name: g.levels[0] for name, g in table.groups.items()}
    assert p2.dense_ms() == p1.dense_ms() and p2.predict_counts(counts) == p1.predict_counts(counts)
    assert again.check_target(threads=1) == []  # built here, for this machine


def test_table_errors_name_the_cause(mnist_setup, tmp_path):
    _, _, table = mnist_setup
    doc = table.to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TableError, match="bad.json"):
        LatencyTable.load(bad)
    with pytest.raises(TableError, match="version"):
        LatencyTable.from_dict({**doc, "version": 99})
    sig = next(iter(doc["ops"]))
    key = next(iter(doc["ops"][sig]["points"]))
    doc["ops"][sig]["points"][key] = None
    with pytest.raises(TableError, match="never timed"):
        LatencyTable.from_dict(doc)


def test_layers_follow_the_groups(mnist_setup):
    model, x, table = mnist_setup
    layers = timed_layers(model, x, analyze(model, x).groups)
    assert [layer.name for layer in layers] == [layer.name for layer in table.layers]
    stem, head = layers[0], layers[-1]
    assert stem.c_in == 1 and stem.in_group is None and stem.out_group is not None
    assert head.kind == "gemm" and head.out_group is None and head.in_group is not None


def test_depthwise_convs_follow_the_group_of_their_channels():
    # a depthwise conv's time changes with its channel group; left unattributed, the allocator would
    # count it as fixed time and never cut the expansions that pay most on MobileNets
    model = torchvision.models.mobilenet_v2(width_mult=0.25).eval()
    x = torch.randn(1, 3, 32, 32)
    layers = timed_layers(model, x, analyze(model, x).groups)
    depthwise = [layer for layer in layers if layer.depthwise]
    assert depthwise and all(layer.in_group == layer.out_group is not None for layer in depthwise)
    producer = {layer.out_group for layer in layers if not layer.depthwise}
    assert all(layer.out_group in producer for layer in depthwise)


def test_an_axis_is_a_group_only_where_one_unit_is_one_channel():
    # a Linear after a flatten reads each conv channel 16 times, a conv after a concatenation reads two
    # groups: counting their kept units as the layer's channels would predict a far smaller layer
    class FlattenConcat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(3, 8, 3, padding=1)
            self.mix = torch.nn.Conv2d(16, 6, 1)
            self.fc = torch.nn.Linear(6 * 16, 5)

        def forward(self, x):
            y = self.mix(torch.cat([self.a(x), self.b(x)], 1))
            return self.fc(F.adaptive_avg_pool2d(y, 4).flatten(1))

    model, x = FlattenConcat().eval(), torch.randn(1, 3, 8, 8)
    layers = {layer.name: layer for layer in timed_layers(model, x, analyze(model, x).groups)}
    assert layers["a"].out_group == "a" and layers["mix"].out_group == "mix"
    assert layers["mix"].in_group is None and layers["mix"].c_in == 16  # two groups: timed at full width
    assert layers["fc"].in_group is None and layers["fc"].c_in == 96  # 6 channels x 16 positions


def test_linear_layers_on_token_sequences_are_timed_as_gemms_over_their_tokens():
    from edgeprune.tasks import get_task

    task = get_task("mnist-vit")
    model, x = task.build(seed=0), task.example_input()
    groups = analyze(model, x).groups
    layers = {layer.name: layer for layer in timed_layers(model, x, groups)}
    fc1 = layers["blocks.0.mlp.0"]
    assert (fc1.kind, fc1.hw, fc1.signature) == ("gemm", (17, 1), "gemm m17")  # 16 patches + [cls]
    assert fc1.macs(64, 128) == 17 * 64 * 128
    assert fc1.out_group == "blocks.0.mlp.0" and fc1.in_group == "patch_embed"  # the residual width
    qkv = layers["blocks.0.attn.qkv"]
    assert qkv.out_group is None and qkv.c_out == 192  # heads: units of 16 channels x q/k/v, timed whole
    assert layers["head"].hw == (1, 1) and layers["head"].signature == "gemm"


def test_predictor_reads_a_pruned_model_like_its_plan(mnist_setup):
    import copy

    from edgeprune.surgery import apply_plan, named_tensors
    from edgeprune.targets import counts_plan, group_scores

    model, x, table = mnist_setup
    predictor = LatencyPredictor(table)
    groups = analyze(model, x).groups
    counts = {name: g.levels[0] for name, g in table.groups.items()}
    plan = counts_plan(groups, group_scores(model, groups), counts, named_tensors(model))
    pruned = apply_plan(copy.deepcopy(model), plan)
    assert predictor.predict_model(pruned) == pytest.approx(predictor.predict_plan(plan))
    assert predictor.predict_plan(plan) < predictor.dense_ms()


def test_standalone_builder_runs_without_torch_or_onnx(mnist_setup, tmp_path):
    model, x, _ = mnist_setup
    ops = write_ops(model, x, tmp_path / "device", TableConfig(threads=1, levels=2, calibrate=(0.5,)))
    out = tmp_path / "device" / "table.json"
    # the device has onnxruntime and numpy only: make importing torch, onnx or edgeprune fail
    code = ("import sys, runpy; [sys.modules.__setitem__(m, None) for m in ('torch', 'onnx', 'edgeprune')]; "
            f"sys.argv = ['lut_builder.py', {str(ops)!r}, '--out', {str(out)!r}, '--threads', '1', "
            "'--runs', '2', '--warmup', '1']; runpy.run_path(sys.argv[0] if False else "
            f"{str(tmp_path / 'device' / 'lut_builder.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = LatencyTable.load(out)
    assert set(table.measured) == {"dense", "uniform-0.5"}  # the calibration models were timed there too
    assert LatencyPredictor(table).calibration.points
