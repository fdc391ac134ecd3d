"""N:M sparsity: masks checked against a brute-force oracle and the NVIDIA ASP layout."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgeprune.surgery.masks import finalize, masks_of
from edgeprune import prune_weights
from edgeprune.weights import WeightPruneConfig, check_nm, nm_report
from edgeprune.weights.nm import nm_keep_mask, parse_nm


def _oracle_linear(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    # For each row and each block of m consecutive columns keep the n largest |w| (plain loops).
    keep = torch.zeros_like(w, dtype=torch.bool)
    for r in range(w.shape[0]):
        for c0 in range(0, w.shape[1], m):
            block = w[r, c0:c0 + m].abs().tolist()
            best = sorted(range(m), key=lambda i: -block[i])[:n]
            for i in best:
                keep[r, c0 + i] = True
    return keep


def _asp_conv(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    # NVIDIA ASP (apex/contrib/sparsity/sparse_masklib.py) for a 4-D conv weight:
    # permute (K, C, R, S) -> (R, S, K, C), view (R*S*K, C), mask rows, undo the permutation.
    k, c, r, s = w.shape
    flat = w.permute(2, 3, 0, 1).reshape(r * s * k, c)
    keep = _oracle_linear(flat, n, m)
    return keep.view(r, s, k, c).permute(2, 3, 0, 1)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 8), (1, 2)])
def test_linear_mask_matches_bruteforce(n, m):
    torch.manual_seed(n * 10 + m)
    w = torch.randn(6, 4 * m)
    keep = nm_keep_mask(w.abs(), n, m, dim=1)
    assert torch.equal(keep, _oracle_linear(w, n, m))
    assert check_nm(w * keep, n, m, dim=1)
    assert int(keep.sum()) == w.numel() * n // m


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_conv_mask_follows_the_asp_layout(n, m):
    torch.manual_seed(0)
    w = torch.randn(5, 2 * m, 3, 3)
    keep = nm_keep_mask(w.abs(), n, m, dim=1)
    assert torch.equal(keep, _asp_conv(w, n, m))
    assert check_nm(w * keep, n, m, dim=1)


def test_check_nm_detects_violations():
    w = torch.tensor([[1.0, 0.0, 0.0, 2.0, 1.0, 1.0, 1.0, 0.0]])
    assert not check_nm(w, 2, 4)
    report = nm_report(w, 2, 4)
    assert (report.groups, report.violations, report.max_nonzero) == (2, 1, 3)
    assert check_nm(w, 3, 4)
    assert not check_nm(torch.ones(2, 6), 2, 4)  # 6 is not a multiple of 4: the pattern cannot hold
    assert check_nm(torch.zeros(3, 8), 2, 4)
    assert check_nm(torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]), 2, 4, dim=0)


def test_parse_nm():
    assert parse_nm("2:4") == (2, 4) and parse_nm(" 16 : 32 ") == (16, 32)
    for bad in ["4:2", "0:4", "2-4", "two:four", "4:4"]:
        with pytest.raises(ValueError):
            parse_nm(bad)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # 3 input channels: cannot hold N:M
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)  # 1 input channel per group
        self.fc = nn.Linear(32, 24)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = self.dw(torch.relu(self.conv(torch.relu(self.stem(x)))))
        return self.head(torch.relu(self.fc(x.mean((2, 3)))))


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_prune_weights_nm_every_pruned_tensor_holds_the_pattern(pattern):
    torch.manual_seed(0)
    model = ConvNet()
    result = prune_weights(model, config=WeightPruneConfig(None, pattern=pattern, protect_first=False,
                                                          protect_last=False))
    n, m = parse_nm(pattern)
    masks = masks_of(result.model)
    assert set(masks) == {"conv.weight", "fc.weight", "head.weight"}
    assert set(result.skipped) == {"stem.weight", "dw.weight"}
    assert "not a multiple" in result.skipped["stem.weight"]
    assert result.plan.kind == pattern and all(e.pattern == pattern for e in result.plan.masks)
    finalize(result.model)
    sd = result.model.state_dict()
    for name in masks:
        assert check_nm(sd[name], n, m, dim=1), name
        assert abs((sd[name] == 0).float().mean().item() - (1 - n / m)) < 1e-6
    # the kept values are the largest of each group (oracle on the flattened layout)
    w = model.conv.weight.detach()
    assert torch.equal(sd["conv.weight"] != 0, _asp_conv(w, n, m) & (w != 0))


def test_nm_sparsity_must_agree_with_the_pattern():
    with pytest.raises(ValueError, match="contradicts"):
        WeightPruneConfig(0.9, pattern="2:4")
    assert WeightPruneConfig(0.5, pattern="2:4").sparsity == 0.5
    assert WeightPruneConfig(None, pattern="4:8").nm == (4, 8)
