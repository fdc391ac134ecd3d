"""MAC counts against two oracles: FlopCounterMode on the slow (decomposed) path, and torchvision's
published operation counts."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from edgeprune.measure.macs import count_macs


def flop_counter_macs(model: nn.Module, x) -> int:
    """FlopCounterMode's flops / 2 where it sees every matmul: with grad enabled on trainable
    parameters (no fused attention fast path) and the math SDPA backend (attention as matmuls)."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    counter = FlopCounterMode(display=False)
    try:
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return counter.get_total_flops() // 2


@functools.lru_cache(maxsize=None)
def _model(name: str, res: int) -> nn.Module:  # counting does not change a model: share them
    kwargs = {"image_size": res} if name.startswith("vit") else {}
    return torchvision.models.get_model(name, **kwargs).eval()


@pytest.mark.parametrize("name, res", [("resnet18", 64), ("mobilenet_v2", 64), ("densenet121", 32),
                                       ("vit_b_16", 32), ("shufflenet_v2_x0_5", 64)])
def test_macs_agree_with_flop_counter(name, res):
    model = _model(name, res)
    x = torch.randn(1, 3, res, res)
    ours = count_macs(model, x).total
    oracle = flop_counter_macs(model, x)
    assert abs(ours - oracle) <= 0.01 * oracle, (ours, oracle)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_macs_match_torchvision_published_counts(name):
    # torchvision's weight metadata gives GFLOPS counted as multiply-adds at 224x224 (e.g. 1.814 for resnet18)
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"] * 1e9
    ours = count_macs(_model(name, 224), torch.randn(1, 3, 224, 224)).total
    assert abs(ours - published) <= 0.01 * published, (ours, published)


def test_kinds_split_conv_and_linear_and_sum_to_total():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    c = count_macs(m, torch.randn(2, 3, 4, 4))
    assert c.by_kind["conv"] == 2 * 8 * 16 * 3 * 9
    assert c.by_kind["linear"] == 2 * 128 * 10
    assert c.total == sum(c.by_kind.values())


def test_grouped_and_transposed_convolutions():
    x = torch.randn(1, 8, 10, 10)
    grouped = nn.Conv2d(8, 16, 3, groups=4, bias=False)  # out 8x8; each output sees 2 input channels
    assert count_macs(grouped, x).total == 16 * 64 * 2 * 9
    up = nn.ConvTranspose2d(8, 4, 2, stride=2)
    assert count_macs(up, x).total == flop_counter_macs(up, x) == 100 * 8 * 4 * 4


def test_sdpa_is_counted_with_its_formula():
    # FlopCounterMode sees nothing of the CPU SDPA kernel; the formula is B*H*L*S*(E+Ev)
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)

    class Attn(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, k, v)

    c = count_macs(Attn(), q)
    assert c.by_kind["attention"] == 2 * 4 * 10 * 12 * (8 + 6)
    assert c.total == c.by_kind["attention"]
    with sdpa_kernel(SDPBackend.MATH):  # the same count, and kind, when it runs as matmuls
        assert count_macs(Attn(), q).by_kind == c.by_kind


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def test_fused_multihead_attention_fast_path_matches_slow_path():
    class SelfAttn(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(64, 4, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    model = _frozen(SelfAttn())
    x = torch.randn(2, 10, 64)
    ours = count_macs(model, x)  # frozen + no_grad: the fused _native_multi_head_attention kernel
    assert ours.by_kind["attention"] == ours.total
    assert ours.total == flop_counter_macs(model, x) == 2 * 10 * 64 * 64 * 4 + 2 * 2 * 10 * 10 * 64


def test_fused_transformer_encoder_layer_matches_slow_path():
    layer = _frozen(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True))
    x = torch.randn(2, 10, 64)
    assert count_macs(layer, x).total == flop_counter_macs(layer, x)


def test_plain_flop_counter_undercounts_vit_under_no_grad():
    # why we do not just wrap FlopCounterMode: under no_grad it misses the fused attention entirely
    model = _model("vit_b_16", 32)
    x = torch.randn(1, 3, 32, 32)
    naive = FlopCounterMode(display=False)
    with torch.no_grad(), naive:
        model(x)
    ours = count_macs(model, x).total
    assert naive.get_total_flops() // 2 < 0.8 * ours
    assert ours == flop_counter_macs(model, x)


def test_macs_scale_with_batch():
    m = _model("resnet18", 32)
    assert count_macs(m, torch.randn(3, 3, 32, 32)).total == 3 * count_macs(m, torch.randn(1, 3, 32, 32)).total
