"""Every runtime's FP32 artifact against PyTorch (the oracle), on pruned models with odd widths.

One contract over the registry: for each runtime and each pruned model, the exported artifact is
written only after it agrees with PyTorch, and agrees within 1e-4 relative on inputs it was not
checked on. Artifacts are exported once per module (ExecuTorch lowering is the slow part).
"""
from __future__ import annotations

import builtins
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.runtimes import (FP32, Artifact, ParityError, RuntimeMissingError, UnknownRuntimeError, get_runtime,
                                measure_interleaved, runtime_names)

RUNTIMES = runtime_names()


class CNN1d(nn.Module):
    """A 1D CNN of the sensor kind (Conv1d + BatchNorm + ReLU, pooled, a Linear head)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(3, 24, 5, padding=2), nn.BatchNorm1d(24), nn.ReLU(),
                                      nn.Conv1d(24, 32, 5, stride=2, padding=2), nn.BatchNorm1d(32), nn.ReLU())
        self.head = nn.Linear(32, 6)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


def _randomize_bn(model: nn.Module) -> nn.Module:
    # non-trivial BatchNorm statistics, so a folding bug shows
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _pruned(name: str):
    import torchvision

    from tests.zoo import MobileNetLike

    torch.manual_seed(0)
    if name == "resnet18":
        model, x = _randomize_bn(torchvision.models.resnet18(num_classes=10)), torch.randn(1, 3, 64, 64)
        return ep.prune(model, x, 0.4).model, x
    if name == "mobilenet_v2":  # 60% of each expansion kept: odd widths (57, 86, ...)
        model, x = _randomize_bn(torchvision.models.mobilenet_v2(num_classes=10)), torch.randn(1, 3, 64, 64)
        return ep.prune(model, x, 0.4).model, x
    if name == "mobilenet-like":  # inverted residuals with depthwise convs, a few blocks: fast to lower
        model, x = _randomize_bn(MobileNetLike()), torch.randn(1, 3, 16, 16)
        return ep.prune(model, x, 0.3).model, x
    if name == "cnn1d":
        model, x = _randomize_bn(CNN1d()), torch.randn(1, 3, 128)
        return ep.prune(model, x, 0.3).model, x
    if name == "mnist-vit":  # heads, MLP units and residual width pruned
        from edgeprune.tasks import get_task, pretrained

        vit, x = pretrained("mnist-vit").eval(), get_task("mnist-vit").example_input()
        return ep.prune(vit, x, budget=Budget(macs=0.5)).model, x
    raise KeyError(name)


MODELS = ["cnn1d", "mobilenet-like", "resnet18", "mobilenet_v2", "mnist-vit"]
# LiteRT conversion and ExecuTorch lowering of the torchvision models and the ViT take 20-60 s each on
# two busy cores: those pairs run with -m slow (benchmarks/runtimes.py checks the 224 px ones too).
FAST = {(rt, m) for rt in RUNTIMES for m in ("cnn1d", "mobilenet-like")} | {
    (rt, m) for rt in ("onnxruntime", "openvino") for m in MODELS}
PAIRS = [pytest.param(rt, m, marks=() if (rt, m) in FAST else pytest.mark.slow, id=f"{m}-{rt}")
         for m in MODELS for rt in RUNTIMES]


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _pruned(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory):
    """``artifact(runtime, model) -> path``, each written once by the runtime's checked export."""
    cache = {}
    folder = tmp_path_factory.mktemp("artifacts")

    def get(rt_name, name):
        if (rt_name, name) not in cache:
            model, x = models(name)
            rt = get_runtime(rt_name)
            options = {}
            if rt_name == "onnxruntime":
                options = {"exporter": "torchscript"}  # 3-7x faster to export; both agree with PyTorch
            elif rt_name == "openvino":  # from the checked ONNX file (the PyTorch frontend is ~10x slower)
                options = {"onnx": get("onnxruntime", name)}
            cache[rt_name, name] = rt.export(model, x, rt.artifact_path(folder / rt_name, name), **options)
        return cache[rt_name, name]

    return get


@pytest.mark.parametrize("name", ["mobilenet-like", "mobilenet_v2"])
def test_the_mobilenets_have_odd_depthwise_widths(name, models):
    widths = [m.out_channels for m in models(name)[0].modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert sum(w % 2 for w in widths) >= min(3, len(widths) // 2)  # the case runtimes treat differently


def test_the_vit_lost_heads(models):
    from edgeprune.tasks import pretrained

    heads = pretrained("mnist-vit").blocks[0].attn.num_heads
    assert models("mnist-vit")[0].blocks[0].attn.num_heads < heads


@pytest.mark.parametrize("runtime,name", PAIRS)
def test_fp32_artifact_agrees_with_pytorch(runtime, name, models, artifacts):
    model, x = models(name)
    rt = get_runtime(runtime)
    path = artifacts(runtime, name)
    assert path.exists() and path.suffix == rt.suffix
    session = rt.open(path, threads=2)
    threads = 1 if runtime == "tflm" else 2  # the TFLM interpreter is single-threaded and says so
    assert session.precision == "f32" and session.threads == threads and session.version == rt.version != ""
    for seed in (11, 12):  # inputs the export's own check did not see
        xs = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            want = model(xs).numpy()
        got = session.run([xs.numpy()])
        assert len(got) == 1 and got[0].shape == want.shape
        rel = np.abs(got[0] - want).max() / np.abs(want).max()
        assert rel <= FP32.rtol, (runtime, name, rel)


def test_openvino_writes_its_weights_beside_and_leaves_no_staging(artifacts):
    xml = artifacts("openvino", "cnn1d")
    assert xml.with_suffix(".bin").stat().st_size > 1000
    assert not [p for p in xml.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("runtime", ["litert", "openvino"])
def test_an_artifact_that_disagrees_is_refused_and_nothing_is_written(runtime, tmp_path, monkeypatch):
    rt = get_runtime(runtime)
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    shifted = nn.Sequential(nn.Linear(4, 3)).eval()
    shifted.load_state_dict(model.state_dict())
    with torch.no_grad():
        shifted[0].bias += 0.05
    real_write = type(rt)._write
    monkeypatch.setattr(type(rt), "_write", lambda self, m, *a, **k: real_write(self, shifted, *a, **k))
    target = rt.artifact_path(tmp_path, "m")
    target.write_bytes(b"previous")
    with pytest.raises(ParityError, match="differs from PyTorch") as info:
        rt.export(model, torch.randn(1, 4), target)
    assert info.value.runtime == runtime and info.value.max_abs == pytest.approx(0.05, rel=1e-2)
    assert target.read_bytes() == b"previous" and sorted(os.listdir(tmp_path)) == [target.name]


def test_a_missing_extra_is_refused_with_the_pip_command(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.split(".")[0] in ("litert_torch", "ai_edge_litert"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    monkeypatch.setattr("importlib.import_module", lambda name: no_litert(name))
    rt = get_runtime("litert")
    with pytest.raises(RuntimeMissingError, match=r"pip install 'edgeprune\[litert\]'"):
        rt.export(nn.Linear(4, 2), torch.randn(1, 4), tmp_path / "m.tflite")
    with pytest.raises(RuntimeMissingError, match=r"edgeprune\[litert\]"):
        rt.open(tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())
    # the core runtime needs no extra and still exports, checks and times
    path = get_runtime("onnxruntime").export(nn.Linear(4, 2).eval(), torch.randn(1, 4), tmp_path / "m.onnx")
    got = measure_interleaved({"m": Artifact("onnxruntime", path)}, torch.randn(1, 4), threads=1, rounds=2, runs=2)
    assert got["m"].ms > 0 and got["m"].runtime == "onnxruntime"


def test_unknown_runtime_names_the_known_ones():
    with pytest.raises(UnknownRuntimeError, match="onnxruntime, litert, executorch, openvino"):
        get_runtime("tensorrt")


def test_interleaved_timing_mixes_runtimes_and_records_what_ran(models, artifacts):
    _, x = models("cnn1d")
    arts = {rt: Artifact(rt, artifacts(rt, "cnn1d")) for rt in RUNTIMES}
    got = measure_interleaved(arts, x, threads=1, rounds=3, runs=3, warmup=1)
    assert list(got) == RUNTIMES
    for rt, m in got.items():
        assert m.runtime == rt and m.threads == 1 and m.precision == "f32" and m.version == get_runtime(rt).version
        assert len(m.rounds) == 3 and all(r.runs == 3 for r in m.rounds) and m.ms > 0
    # the reference's figure is its own median over rounds
    ref = got["onnxruntime"]
    assert ref.ms == pytest.approx(float(np.median([r.median_ms for r in ref.rounds])))


def test_openvino_default_precision_is_recorded_when_asked_for(artifacts):
    s = get_runtime("openvino").open(artifacts("openvino", "cnn1d"), threads=1, precision="default")
    assert s.precision in ("f32", "bf16", "f16")


def test_odd_depthwise_widths_are_timed_against_width_rounded_to_8(models, tmp_path, monkeypatch):
    from edgeprune.run import transfer

    model, x = models("mobilenet-like")
    found = transfer.odd_depthwise(model, x)
    assert found and all(r["width"] % 8 for r in found)
    assert [r["macs"] for r in found] == sorted((r["macs"] for r in found), reverse=True)
    monkeypatch.setattr(transfer, "SLOW_STEP_MARGIN", 0.0)  # any odd width "slower": every row warns
    rows = transfer.width_steps(model, x, ["onnxruntime"], tmp_path, threads=1, limit=1, rounds=2, runs=2)
    assert len(rows) == 1 and rows[0]["rounded"] == -(-rows[0]["width"] // 8) * 8
    assert rows[0]["odd_ms"] > 0 and rows[0]["rounded_ms"] > 0 and "slow step of onnxruntime" in rows[0]["warning"]
    monkeypatch.setattr(transfer, "SLOW_STEP_MARGIN", 1e9)
    rows = transfer.width_steps(model, x, ["onnxruntime"], tmp_path / "b", threads=1, limit=1, rounds=2, runs=2)
    assert rows[0]["warning"] is None
