"""Sparse ONNX: files really get smaller, ONNX Runtime loads them, outputs match PyTorch."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from edgeprune.export.sparse_onnx import export_sparse_onnx, onnx_size_report, to_sparse_onnx
from edgeprune.surgery.masks import finalize, is_masked
from edgeprune import prune_weights
from edgeprune.weights import WeightPruneConfig

RTOL = 1e-4


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv2(x)), 4).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _ort(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.fixture(scope="module")
def sparse90(tmp_path_factory):
    """A 90%-sparse (every weight tensor) model, exported dense with torch.onnx.export and converted."""
    torch.manual_seed(0)
    masked = prune_weights(Net(), config=WeightPruneConfig(0.9, allocation="uniform", protect_first=False,
                                                           protect_last=False)).model
    model = finalize(masked).eval()
    x = torch.randn(2, 3, 16, 16)
    d = tmp_path_factory.mktemp("onnx")
    torch.onnx.export(model, (x,), str(d / "dense.onnx"), dynamo=True, external_data=False, verbose=False)
    return model, x, d


def test_90_percent_sparse_file_is_at_most_0_3x_and_matches_pytorch(sparse90):
    model, x, d = sparse90
    report = to_sparse_onnx(d / "dense.onnx", d / "sparse.onnx")
    assert set(report.converted) >= {"conv2.weight", "fc1.weight", "fc2.weight"}
    sizes = onnx_size_report(d / "dense.onnx", d / "sparse.onnx")
    assert sizes["ratio"] <= 0.3, sizes
    assert sizes["sparse_zip_bytes"] < sizes["dense_zip_bytes"]
    model_proto = onnx.load(str(d / "sparse.onnx"))
    assert len(model_proto.graph.sparse_initializer) >= 3
    with torch.no_grad():
        want = model(x).numpy()
    assert _rel_err(_ort(d / "sparse.onnx", x), want) <= RTOL
    assert _rel_err(_ort(d / "dense.onnx", x), want) <= RTOL


def test_int64_indices_pass_the_onnx_checker(sparse90):
    model, x, d = sparse90
    to_sparse_onnx(d / "dense.onnx", d / "strict.onnx", index_dtype="int64")
    onnx.checker.check_model(onnx.load(str(d / "strict.onnx")))
    with torch.no_grad():
        assert _rel_err(_ort(d / "strict.onnx", x), model(x).numpy()) <= RTOL
    strict = onnx_size_report(d / "dense.onnx", d / "strict.onnx")
    to_sparse_onnx(d / "dense.onnx", d / "compact.onnx")
    compact = onnx_size_report(d / "dense.onnx", d / "compact.onnx")
    assert compact["sparse_bytes"] < strict["sparse_bytes"]


def _gemm_model(w: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, w.shape[1]])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, w.shape[0]])
    graph = helper.make_graph([helper.make_node("Gemm", ["X", "W"], ["Y"], transB=1)], "g", [x], [y],
                              initializer=[numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_model(w: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, w.shape[1]] + [6] * (w.ndim - 2))
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Conv", ["X", "W"], ["Y"])], "g", [x], [y],
                              initializer=[numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shape,layout,dtype", [
    ((10, 12), "linear", "int8"),          # 120 values: linear int8
    ((60, 500), "linear", "int16"),        # 30,000 values: linear int16 (2 B) beats 2 x int16 coords
    ((300, 784), "linear", "int32"),       # 235,200 values: int32 linear ties 2 x int16 coords; linear wins ties
    ((32, 64, 3, 3), "linear", "int16"),   # conv2d, 18,432 values: int16 linear (2 B) beats 4 x int8 coords
    ((120, 120, 3), "coordinates", "int8"),  # conv1d, 43,200 values: 3 x int8 coords (3 B) beat int32 linear
])
def test_each_index_encoding_loads_in_onnx_runtime(tmp_path, shape, layout, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < 0.9] = 0.0
    model = _gemm_model(w) if len(shape) == 2 else _conv_model(w)
    onnx.save(model, tmp_path / "dense.onnx")
    report = to_sparse_onnx(tmp_path / "dense.onnx", tmp_path / "sparse.onnx")
    assert report.converted["W"][:2] == (layout, dtype)
    x = rng.standard_normal((2, shape[1]) if len(shape) == 2 else (1, shape[1]) + (6,) * (len(shape) - 2))
    x = x.astype(np.float32)
    dense = ort.InferenceSession(str(tmp_path / "dense.onnx")).run(None, {"X": x})[0]
    sparse = ort.InferenceSession(str(tmp_path / "sparse.onnx")).run(None, {"X": x})[0]
    assert _rel_err(sparse, dense) <= 1e-6  # the same numbers, so the same result
    stored = onnx.load(str(tmp_path / "sparse.onnx")).graph.sparse_initializer[0]
    assert np.array_equal(numpy_helper.to_array(stored.values), w.reshape(-1)[np.flatnonzero(w)])


def test_dense_and_unconvertible_initializers_stay(tmp_path):
    w = np.ones((8, 8), dtype=np.float32)
    w[:, :3] = 0  # 37.5% zeros: under min_sparsity
    onnx.save(_gemm_model(w), tmp_path / "dense.onnx")
    report = to_sparse_onnx(tmp_path / "dense.onnx", tmp_path / "sparse.onnx", min_sparsity=0.5)
    assert report.converted == {} and report.kept_dense == ["W"]


def test_export_sparse_onnx_from_a_masked_model_leaves_it_masked(tmp_path):
    torch.manual_seed(1)
    result = prune_weights(Net(), config=WeightPruneConfig(0.9, allocation="lamp", protect_first=False))
    x = torch.randn(1, 3, 16, 16)
    report = export_sparse_onnx(result.model, x, tmp_path / "out" / "m.onnx")
    assert is_masked(result.model)
    assert "fc1.weight" in report.converted
    with torch.no_grad():
        want = result.model.eval()(x).numpy()
    assert _rel_err(_ort(tmp_path / "out" / "m.onnx", x), want) <= RTOL
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.onnx"]  # no temporary files left


def test_failures_leave_no_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        to_sparse_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(Exception):
        to_sparse_onnx(tmp_path / "bad.onnx", tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]
