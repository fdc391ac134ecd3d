"""Weight pruning: allocations against oracles (torch.nn.utils.prune, the LAMP formula), protection,
the caller's model, the plan, the sparsity table and the gradual schedule."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from edgeprune.plan import Plan, plans_of
from edgeprune.surgery.masks import apply_masks, finalize, is_masked, masks_of
from edgeprune import prune_weights
from edgeprune.weights import (GradualWeightPruner, WeightPruneConfig, cubic_sparsity, render_sparsity_table,
                               sparsity_table)
from edgeprune.weights.scores import lamp_scores

ALL = dict(protect_first=False, protect_last=False)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(40, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))))


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    model = MLP()
    with torch.no_grad():  # layers on different scales, so global and uniform really differ
        model.fc2.weight.mul_(3.0)
        model.fc3.weight.mul_(0.3)
    return model


LAYERS = ["fc1", "fc2", "fc3", "out"]


def _torch_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.weight": getattr(model, n).weight_mask.bool() for n in LAYERS}


def test_global_matches_torch_global_unstructured():
    model = _mlp()
    oracle = copy.deepcopy(model)
    torch_prune.global_unstructured([(getattr(oracle, n), "weight") for n in LAYERS],
                                   pruning_method=torch_prune.L1Unstructured, amount=0.8)
    result = prune_weights(model, config=WeightPruneConfig(0.8, allocation="global", **ALL))
    got, want = masks_of(result.model), _torch_masks(oracle)
    for name in want:
        assert torch.equal(got[name], want[name]), name
    per_layer = [r["sparsity"] for r in sparsity_table(result.model)]
    assert max(per_layer) - min(per_layer) > 0.2  # global really spreads unevenly


def test_uniform_matches_torch_l1_unstructured_per_layer():
    model = _mlp()
    oracle = copy.deepcopy(model)
    for n in LAYERS:
        torch_prune.l1_unstructured(getattr(oracle, n), "weight", amount=0.7)
    result = prune_weights(model, config=WeightPruneConfig(0.7, allocation="uniform", **ALL))
    got, want = masks_of(result.model), _torch_masks(oracle)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def _lamp_naive(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(-1).double()
    out = torch.empty_like(flat)
    for i in range(flat.numel()):
        bigger = (flat.abs() > flat[i].abs()) | ((flat.abs() == flat[i].abs()) & (torch.arange(flat.numel()) >= i))
        out[i] = flat[i] ** 2 / (flat[bigger] ** 2).sum()
    return out.reshape(w.shape)


def test_lamp_scores_match_the_formula():
    torch.manual_seed(1)
    w = torch.randn(7, 9)
    assert torch.allclose(lamp_scores(w), _lamp_naive(w), rtol=1e-12, atol=0)
    assert lamp_scores(w).max().item() == pytest.approx(1.0)


def test_lamp_allocation_is_a_global_threshold_on_lamp_scores():
    model = _mlp()
    result = prune_weights(model, config=WeightPruneConfig(0.9, allocation="lamp", **ALL))
    masks = masks_of(result.model)
    scores = {f"{n}.weight": _lamp_naive(getattr(model, n).weight.detach()) if n == "out"
              else lamp_scores(getattr(model, n).weight) for n in LAYERS}
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    threshold = flat.sort().values[int(round(0.9 * flat.numel())) - 1]
    for name, keep in masks.items():
        assert torch.equal(keep, scores[name] > threshold), name
        assert keep.any()  # LAMP never empties a layer
    assert result.stats["sparsity_pruned"] == pytest.approx(0.9, abs=1e-3)


def test_random_is_uniform_seeded_and_reproducible():
    model = _mlp()
    a = masks_of(prune_weights(model, config=WeightPruneConfig(0.6, allocation="random", seed=1, **ALL)).model)
    b = masks_of(prune_weights(model, config=WeightPruneConfig(0.6, allocation="random", seed=1, **ALL)).model)
    c = masks_of(prune_weights(model, config=WeightPruneConfig(0.6, allocation="random", seed=2, **ALL)).model)
    for name, keep in a.items():
        assert torch.equal(keep, b[name])
        assert abs((~keep).float().mean().item() - 0.6) < 1 / keep.numel() + 1e-9
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_protection_ignore_and_include():
    model = _mlp()
    r = prune_weights(model, 0.5)  # defaults: first and last layers protected
    assert set(masks_of(r.model)) == {"fc2.weight", "fc3.weight"}
    assert "first layer" in r.skipped["fc1.weight"] and "last layer" in r.skipped["out.weight"]
    r = prune_weights(model, 0.5, ignore=("fc3",), config=None)
    assert "fc3.weight" not in masks_of(r.model) and "ignored" in r.skipped["fc3.weight"]
    r = prune_weights(model, config=WeightPruneConfig(0.5, ignore=(nn.Linear,), include=("fc2.bias",), **ALL))
    assert set(masks_of(r.model)) == set()  # the type rule also covers included tensors of Linear modules
    r = prune_weights(model, config=WeightPruneConfig(0.5, ignore=("fc1*",), include=("fc*.bias",), **ALL))
    assert set(masks_of(r.model)) == {"fc2.weight", "fc3.weight", "out.weight", "fc2.bias", "fc3.bias"}


def test_callers_model_is_unchanged_unless_inplace():
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    r = prune_weights(model, 0.5, allocation="uniform")
    assert r.model is not model and not is_masked(model) and plans_of(model) == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    r = prune_weights(model, 0.5, inplace=True)
    assert r.model is model and is_masked(model)


def test_plan_is_attached_and_replays_on_a_fresh_copy():
    model = _mlp().eval()
    r = prune_weights(model, 0.75, allocation="lamp")
    assert plans_of(r.model) == [r.plan] and r.plan.kind == "weights"
    assert r.plan.meta["allocation"] == "lamp" and r.plan.shapes["fc2.weight"] == [32, 64]
    fresh = apply_masks(copy.deepcopy(model), Plan.from_json(r.plan.to_json()))
    x = torch.randn(5, 40)
    with torch.no_grad():
        assert torch.equal(fresh(x), r.model(x))
    assert prune_weights(model, pattern="2:4").plan.kind == "2:4"


def test_stats_count_nonzeros_and_claim_no_speedup():
    r = prune_weights(_mlp(), config=WeightPruneConfig(0.9, **ALL))
    total = sum(getattr(r.model, n).weight.numel() for n in LAYERS)
    nonzero = sum(int(torch.count_nonzero(getattr(r.model, n).weight)) for n in LAYERS)
    assert r.stats["total"] == total and r.stats["nonzero"] == nonzero
    assert r.stats["compression"] == pytest.approx(total / nonzero)
    assert not any("speed" in k or "latency" in k for k in r.stats)


def test_sparsity_table_rows_and_rendering():
    r = prune_weights(_mlp(), 0.5)
    rows = sparsity_table(r.model)
    assert [row["tensor"] for row in rows] == [f"{n}.weight" for n in LAYERS]
    for row in rows:
        w = r.model.get_submodule(row["tensor"].split(".")[0]).weight
        assert row["nonzero"] == int(torch.count_nonzero(w)) and row["numel"] == w.numel()
    assert [row["masked"] for row in rows] == [False, True, True, False]
    finalize(r.model)
    assert [row["sparsity"] for row in sparsity_table(r.model)] == [row["sparsity"] for row in rows]
    table = render_sparsity_table(rows)
    assert table.row_count == len(rows) + 1


def test_cubic_schedule_is_the_zhu_gupta_formula():
    for t in range(0, 120, 7):
        frac = min(max(t - 10, 0) / 90, 1.0)
        assert cubic_sparsity(t, 0.9, start=10, end=100, initial=0.1) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - frac) ** 3)


def test_gradual_pruner_tightens_monotonically_and_holds_while_training():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = GradualWeightPruner(model, WeightPruneConfig(0.9, allocation="lamp", **ALL), start=5, end=45, every=5)
    x, y = torch.randn(32, 40), torch.randint(0, 4, (32,))
    previous: dict[str, torch.Tensor] = {}
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.step()
        current = masks_of(model)
        for name, keep in previous.items():
            assert not (keep.logical_not() & current[name]).any(), "a pruned weight came back"
        previous = current
    assert pruner.sparsity_ == pytest.approx(0.9)
    pruned = sum(int((~k).sum()) for k in previous.values())
    assert pruned == round(0.9 * sum(k.numel() for k in previous.values()))
    plan = pruner.plan()
    assert plans_of(model)[-1] is plan and len(plan.masks) == 4


def test_bad_options_fail_clearly():
    with pytest.raises(ValueError, match="allocation"):
        prune_weights(_mlp(), 0.5, allocation="best")
    with pytest.raises(ValueError, match="sparsity"):
        prune_weights(_mlp(), 1.5)
    with pytest.raises(ValueError, match="either config"):
        prune_weights(_mlp(), 0.5, config=WeightPruneConfig(0.5))
    with pytest.raises(TypeError):
        WeightPruneConfig(0.5, ignore="fc1")
