"""ONNX export: the parity check against PyTorch is the oracle, and it must catch broken exports."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torchvision

import edgeprune.export.onnx as onnx_export
from edgeprune.export.onnx import ExportError, ExportMismatchError, export_onnx


def _ort_run(path, *arrays):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: a for i, a in zip(s.get_inputs(), arrays)})


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_resnet18_exports_and_matches_pytorch(tmp_path, exporter):
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    path = export_onnx(model, x, tmp_path / "r18.onnx", exporter=exporter)
    assert path.is_file() and _no_leftovers(tmp_path)
    assert not any(p.suffix == ".data" for p in tmp_path.iterdir())  # one self-contained file
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_ort_run(path, x.numpy())[0], ref, rtol=1e-3, atol=1e-4)


def test_timm_model_exports(tmp_path):
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              depth=2).eval()
    x = torch.randn(1, 3, 32, 32)
    path = export_onnx(model, x, tmp_path / "vit.onnx")
    with torch.no_grad():
        np.testing.assert_allclose(_ort_run(path, x.numpy())[0], model(x).numpy(), rtol=1e-3, atol=1e-4)


def test_dynamic_batch_runs_other_batch_sizes(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    path = export_onnx(model, torch.randn(1, 3, 8, 8), tmp_path / "m.onnx", dynamic_batch=True)
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(_ort_run(path, x.numpy())[0], model(x).numpy(), rtol=1e-4, atol=1e-5)


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.lin = nn.Linear(8, 3)

    def forward(self, ids, weight):
        h = self.emb(ids) * weight.unsqueeze(-1)
        return {"logits": self.lin(h), "pooled": h.mean(1)}


@pytest.mark.parametrize("as_dict", [False, True])
def test_tuple_and_dict_inputs_with_several_outputs(tmp_path, as_dict):
    model = TwoInTwoOut().eval()
    ids, w = torch.randint(0, 50, (2, 6)), torch.rand(2, 6)
    example = {"ids": ids, "weight": w} if as_dict else (ids, w)
    path = export_onnx(model, example, tmp_path / "m.onnx", dynamic_batch=True)
    out = _ort_run(path, ids.numpy(), w.numpy())
    with torch.no_grad():
        ref = model(ids, w)
    np.testing.assert_allclose(out[0], ref["logits"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[1], ref["pooled"].numpy(), rtol=1e-4, atol=1e-5)


class ExportOnlyShift(nn.Module):
    """Differs between export and eager: torch.export sees the shifted branch, eager never does."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        if torch.compiler.is_exporting():
            y = y + 0.05
        return y


def test_check_catches_graph_that_differs_from_eager_and_writes_nothing(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous file")
    with pytest.raises(ExportMismatchError) as info:
        export_onnx(ExportOnlyShift().eval(), torch.randn(2, 4), target, exporter="dynamo")
    err = info.value
    assert err.output_index == 0 and err.input_label == "example input"
    assert err.max_abs == pytest.approx(0.05, rel=1e-3)
    assert "max abs diff" in str(err) and "max rel diff" in str(err)
    assert target.read_bytes() == b"previous file"  # the old file is untouched
    assert _no_leftovers(tmp_path)


class BakesInputScale(nn.Module):
    """Tracing turns ``float(x.abs().max())`` into a constant of the example: right on the example
    input, wrong on any other."""

    def forward(self, x):
        return x / float(x.abs().max())


def test_second_random_input_catches_constants_baked_from_the_example(tmp_path):
    with pytest.raises(ExportMismatchError) as info:
        export_onnx(BakesInputScale(), torch.randn(1, 16), tmp_path / "m.onnx", exporter="torchscript")
    assert info.value.input_label == "random input"
    assert not (tmp_path / "m.onnx").exists() and _no_leftovers(tmp_path)


def test_check_catches_a_tampered_weight(tmp_path, monkeypatch):
    real_export = onnx_export._export

    def export_then_corrupt(model, example, path, **kw):
        real_export(model, example, path, **kw)
        proto = onnx.load(str(path))
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[0] += 1.0  # one weight off by 1
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        onnx.save(proto, str(path))

    monkeypatch.setattr(onnx_export, "_export", export_then_corrupt)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    with pytest.raises(ExportMismatchError, match="differs from PyTorch"):
        export_onnx(model, torch.randn(3, 8), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    export_onnx(model, torch.randn(3, 8), tmp_path / "m.onnx", check=False)  # unchecked, it is written
    assert (tmp_path / "m.onnx").exists()


def test_tolerance_is_respected(tmp_path):
    # a 0.05 shift fails the default tolerance and passes atol=0.1
    export_onnx(ExportOnlyShift().eval(), torch.randn(2, 4), tmp_path / "m.onnx", exporter="dynamo", atol=0.1)
    assert (tmp_path / "m.onnx").exists()


def test_auto_falls_back_to_torchscript_when_dynamo_fails(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    model = nn.Linear(4, 2).eval()
    with pytest.warns(RuntimeWarning, match="falling back to the TorchScript exporter"):
        export_onnx(model, torch.randn(1, 4), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="simulated dynamo failure"):
        export_onnx(model, torch.randn(1, 4), tmp_path / "n.onnx", exporter="dynamo")
    assert not (tmp_path / "n.onnx").exists()


def test_training_flags_are_restored(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model.train()
    export_onnx(model, torch.randn(2, 4), tmp_path / "m.onnx")  # exported (and checked) in eval mode
    assert all(m.training for m in model.modules())


def test_sparse_export_writes_the_sparse_file_checked(tmp_path):
    from edgeprune.surgery.masks import is_masked, set_masks

    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4)).eval()
    keep = torch.rand(256, 256) > 0.9
    set_masks(model, {"0.weight": keep})
    x = torch.randn(1, 256)
    dense = export_onnx(model, x, tmp_path / "dense.onnx")
    sparse = export_onnx(model, x, tmp_path / "sparse.onnx", sparse=True)
    names = [i.name for i in onnx.load(str(dense)).graph.initializer]
    assert "0.weight" in names and not any("mask" in n or "original" in n for n in names)  # baked in
    assert is_masked(model) and model(x).shape == (1, 4)  # the caller's model keeps its mask
    assert sparse.stat().st_size < 0.5 * dense.stat().st_size
    with torch.no_grad():
        np.testing.assert_allclose(_ort_run(sparse, x.numpy())[0], model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_sparse_without_the_sparse_module_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "edgeprune.export.sparse_onnx", None)  # import now fails
    with pytest.raises(NotImplementedError, match="edgeprune.export.sparse_onnx"):
        export_onnx(nn.Linear(2, 2), torch.randn(1, 2), tmp_path / "m.onnx", sparse=True)
    assert not (tmp_path / "m.onnx").exists()
