"""Params, bytes, latency, memory and the Profile, each checked against an independent count."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from edgeprune.measure import Profile, compare, count_params, measure_memory, profile
from edgeprune.measure.latency import ort_latency, summarize, time_calls, torch_latency
from edgeprune.measure.profile import SPARSE_NOTE
from edgeprune.measure.size import file_sizes, state_dict_bytes, zip_bytes
from edgeprune.measure.table import comparison_table, profile_table


def mlp(hidden: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, 10)).eval()


# -- params -------------------------------------------------------------------------------------

def test_param_counts_match_a_hand_count():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        m[0].weight[0].zero_()  # 27 zeros
    # conv 8*3*9 + 8, bn 8 + 8, linear 16 + 2; BatchNorm bias starts at zero: 8 more zeros
    c = count_params(m)
    assert c.total == 216 + 8 + 16 + 18 and c.nonzero == c.total - 27 - 8


def test_masked_params_count_their_effective_zeros():
    from edgeprune.surgery.masks import set_masks

    m = mlp()
    keep = torch.rand(64, 32) > 0.75
    set_masks(m, {"0.weight": keep})
    expected = int(keep.sum()) + 64 + 640 + 10
    assert count_params(m).total == 64 * 32 + 64 + 640 + 10
    assert count_params(m).nonzero == expected
    m2 = mlp()
    torch_prune.l1_unstructured(m2[0], "weight", amount=0.5)  # weight_orig + weight_mask
    assert count_params(m2).total == count_params(mlp()).total
    assert count_params(m2).nonzero == count_params(mlp()).total - 1024


def test_tied_parameters_count_once():
    m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    m[1].weight = m[0].weight
    assert count_params(m).total == 40
    assert state_dict_bytes(m) == 160


# -- bytes --------------------------------------------------------------------------------------

def test_sizes_against_the_files(tmp_path):
    from edgeprune.export.onnx import export_onnx

    m = mlp()
    path = export_onnx(m, torch.randn(1, 32), tmp_path / "m.onnx")
    sizes = file_sizes(m, path)
    assert sizes.state_dict_bytes == 4 * count_params(m).total
    assert sizes.onnx_bytes == path.stat().st_size
    assert sizes.onnx_zip_bytes == zip_bytes(path) and sizes.sparse_onnx_bytes is None
    # an all-zero model compresses to almost nothing; random weights barely compress
    zeros = mlp()
    for p in zeros.parameters():
        p.data.zero_()
    zpath = export_onnx(zeros, torch.randn(1, 32), tmp_path / "z.onnx")
    assert file_sizes(zeros, zpath).onnx_zip_bytes < 0.2 * sizes.onnx_zip_bytes
    assert sizes.onnx_zip_bytes > 0.8 * sizes.state_dict_bytes


def test_sparse_exporter_fills_the_sparse_size(tmp_path):
    from edgeprune.export.onnx import export_onnx
    from edgeprune.export.sparse_onnx import to_sparse_onnx
    from edgeprune.surgery.masks import set_masks

    m = mlp(256)
    set_masks(m, {"0.weight": torch.rand(256, 32) > 0.9})
    path = export_onnx(m, torch.randn(1, 32), tmp_path / "m.onnx")
    sizes = file_sizes(m, path, sparse_exporter=to_sparse_onnx)
    assert sizes.sparse_onnx_bytes is not None and sizes.sparse_onnx_bytes < 0.6 * sizes.onnx_bytes


# -- latency ------------------------------------------------------------------------------------

def test_time_calls_runs_warmup_then_timed_runs():
    calls = []
    samples = time_calls(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and len(samples) == 7 and all(s >= 0 for s in samples)


def test_summary_statistics_against_numpy_definitions():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0], runtime="torch", warmup=0, threads=1, batch_size=1)
    assert (s.median_ms, s.min_ms, s.mean_ms) == (3.0, 1.0, 3.0)
    assert s.p95_ms == pytest.approx(4.8)  # linear interpolation between 4 and 5


class ThreadSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: set[int] = set()

    def forward(self, x):
        self.seen.add(torch.get_num_threads())
        return x * 2


def test_torch_latency_uses_the_threads_and_restores_them():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spy = ThreadSpy()
        stats = torch_latency(spy, (torch.randn(2, 3),), {}, threads=2, runs=3, warmup=1)
        assert spy.seen == {2} and torch.get_num_threads() == 1
        assert stats.runs == 3 and stats.threads == 2 and stats.batch_size == 2
        with pytest.raises(RuntimeError):
            torch_latency(nn.Linear(3, 3), (torch.randn(2, 4),), {}, threads=2, runs=1, warmup=0)
        assert torch.get_num_threads() == 1  # restored on error too
    finally:
        torch.set_num_threads(before)


def test_ort_latency_uses_the_session_settings(tmp_path, monkeypatch):
    from edgeprune.export.onnx import export_onnx
    from edgeprune.measure import latency

    path = export_onnx(mlp(), torch.randn(4, 32), tmp_path / "m.onnx")
    made = []
    real = latency.ort_session

    def spy(p, threads, spin):
        s = real(p, threads, spin)
        made.append(s.get_session_options())
        return s

    monkeypatch.setattr(latency, "ort_session", spy)
    stats = ort_latency(path, (torch.randn(4, 32),), {}, threads=2, runs=5, warmup=2)
    opts = made[0]
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert str(opts.execution_mode).endswith("ORT_SEQUENTIAL")
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert stats.runtime == "onnxruntime" and stats.runs == 5 and stats.batch_size == 4
    assert stats.min_ms <= stats.median_ms <= stats.p95_ms


# -- memory -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["tensors", "allocator"])
def test_peak_memory_matches_a_hand_count(method):
    # Linear -> ReLU -> Linear on (8, 256): the (8, 1024) hidden output and the ReLU's copy are
    # alive together: 2 * 8 * 1024 * 4 bytes; then the hidden one is freed before the last layer.
    m = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 256))
    r = measure_memory(m, torch.randn(8, 256), method)
    assert r.peak_activation_bytes == 2 * 8 * 1024 * 4
    assert r.weight_bytes == 4 * count_params(m).total and r.input_bytes == 8 * 256 * 4
    assert r.peak_bytes == r.peak_activation_bytes + r.weight_bytes + r.input_bytes


def test_inplace_activation_needs_less_memory():
    m = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 256))
    assert measure_memory(m, torch.randn(8, 256), "tensors").peak_activation_bytes == 8 * 1024 * 4 + 8 * 256 * 4


def test_allocator_sees_at_least_the_live_tensors():
    import torchvision

    m = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    tensors = measure_memory(m, x, "tensors").peak_activation_bytes
    allocator = measure_memory(m, x, "allocator").peak_activation_bytes
    assert 64 * 32 * 32 * 4 * 2 <= tensors <= allocator <= 3 * tensors


# -- profile ------------------------------------------------------------------------------------

def test_profile_fields_and_json_round_trip():
    m = mlp()
    p = profile(m, torch.randn(1, 32), runs=5, warmup=1, batch_size=3)
    assert p.input_shapes == [[3, 32]] and p.batch_size == 3
    assert p.params == count_params(m)
    assert p.macs.total == 3 * (32 * 64 + 64 * 10)
    assert p.latency_onnx.runs == 5 and p.latency_torch.runs == 5 and p.latency_onnx.batch_size == 3
    assert p.memory is not None and p.notes == []
    text = json.dumps(p.to_dict())
    assert Profile.from_dict(json.loads(text)) == p


def test_profile_keeps_the_onnx_file_when_asked(tmp_path):
    p = profile(mlp(), torch.randn(1, 32), latency=False, memory=False, onnx_path=tmp_path / "kept.onnx")
    assert p.latency_onnx is None and p.latency_torch is None and p.memory is None
    assert (tmp_path / "kept.onnx").stat().st_size == p.sizes.onnx_bytes
    onnx.checker.check_model(str(tmp_path / "kept.onnx"))


def test_sparse_model_reports_nonzeros_but_only_measured_latency():
    from edgeprune.surgery.masks import set_masks

    dense = mlp(256)
    sparse = mlp(256)
    set_masks(sparse, {"0.weight": torch.rand(256, 32) > 0.9, "2.weight": torch.rand(10, 256) > 0.9})
    x = torch.randn(1, 32)
    pd = profile(dense, x, runs=5, warmup=1, memory=False)
    ps = profile(sparse, x, runs=5, warmup=1, memory=False)
    assert ps.params.total == pd.params.total and ps.params.nonzero < 0.2 * pd.params.total
    assert ps.macs.total == pd.macs.total  # dense kernels do the same work on zeros
    assert SPARSE_NOTE in ps.notes and SPARSE_NOTE not in pd.notes
    assert ps.sizes.onnx_zip_bytes < 0.5 * pd.sizes.onnx_zip_bytes  # but the zeros do compress
    # latency is whatever was measured: the samples are the figures, nothing is scaled by sparsity
    assert ps.latency_onnx.median_ms == pytest.approx(sorted(ps.latency_onnx.samples_ms)[2], abs=1e-3)


def test_compare_lines_up_ratios_of_measurements():
    x = torch.randn(1, 32)
    big = profile(mlp(64), x, runs=3, warmup=1, memory=False)
    small = profile(mlp(16), x, runs=3, warmup=1, memory=False)
    rows = {r.metric: r for r in compare(big, small)}
    assert rows["MACs"].ratio == pytest.approx((32 * 16 + 16 * 10) / (32 * 64 + 64 * 10))
    assert rows["ORT latency median"].ratio == pytest.approx(
        small.latency_onnx.median_ms / big.latency_onnx.median_ms)
    assert "sparse ONNX" not in rows  # absent on both sides
    with pytest.raises(ValueError, match="different inputs"):
        compare(big, profile(mlp(16), torch.randn(2, 32), latency=False, memory=False, batch_size=2))
    assert comparison_table(compare(big, small)).row_count == len(rows)
    assert profile_table(big).row_count > 5
