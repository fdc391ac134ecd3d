"""Minimised models from the architecture fuzzer (tests/fuzz): each one was a silent corruption.

Each goes through the fuzzer's oracle (dead units removed with outputs unchanged, a live prune
that runs, keeps its shapes, drops MACs, matches its ONNX export and replays from JSON).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import edgeprune as ep
from tests.fuzz import oracle


class ChunkPassThrough(nn.Module):
    """``a, b = x.chunk(2, 1)``; only ``a`` is convolved (fuzz seeds 24, 28, 205, 258, 367, 519).

    chunk computes its piece sizes from the input's size, so the engine must remove as many units
    from each piece: removing one from ``a`` alone made chunk cut the pruned tensor in the wrong
    place, and the conv reading ``a`` failed. The probe could not see it: it removes one unit
    from every group at once, which shrinks both pieces alike.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        a, b = self.stem(x).chunk(2, dim=1)
        return self.head(torch.cat([F.relu(self.conv(a)), b], dim=1).mean((2, 3)))


class OddChunk(ChunkPassThrough):
    """chunk of an odd width: pieces of 3 and 2, which no equal removal keeps; the width stays whole."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 5, 3, padding=1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(5, 3)


def test_chunk_pieces_lose_the_same_units():
    torch.manual_seed(0)
    model, x = ChunkPassThrough().eval(), torch.randn(1, 3, 8, 8)
    outcome = oracle.check(model, x)
    assert outcome.status == "correct", outcome.detail
    assert outcome.dead_removed > 0
    pruned = ep.prune(model, x, ratio=0.5).model
    assert pruned.stem.out_channels == 2 * pruned.conv.in_channels  # both pieces shrank alike


def test_chunk_of_an_odd_width_keeps_it_whole():
    torch.manual_seed(0)
    model, x = OddChunk().eval(), torch.randn(1, 3, 8, 8)
    outcome = oracle.check(model, x)
    assert outcome.status == "correct", outcome.detail
    result = ep.prune(model, x, ratio=0.5)
    assert result.model.stem.out_channels == 5
    assert "unequal pieces" in result.skipped["stem"]


class NativeGQA(nn.Module):
    """Grouped-query attention through SDPA's own ``enable_gqa=True`` (no ``repeat_kv``): 4 query
    heads share 2 key/value heads (fuzz seeds 24 and 28 of the second generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_heads, self.num_key_value_heads, self.head_dim = 4, 2, 2
        self.q_proj, self.o_proj = nn.Linear(8, 8), nn.Linear(8, 8)
        self.k_proj, self.v_proj = nn.Linear(8, 4), nn.Linear(8, 4)

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)) + x


def test_sdpa_enable_gqa_heads_stay_coupled():
    """Found by the fuzzer: with SDPA ``enable_gqa=True`` the query and key/value heads were separate
    groups, so removing a key/value head pointed its query heads at another one. Fixed by the
    grouped-query coupling (query heads pruned within their key/value group)."""
    torch.manual_seed(0)
    model, x = NativeGQA().eval(), torch.randn(1, 16, 8)
    outcome = oracle.check(model, x)
    assert outcome.status == "correct", outcome.detail
