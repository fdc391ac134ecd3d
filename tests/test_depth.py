"""Depth pruning: residual blocks found, scored by Block Influence, replaced by the identity.

Oracles: a block whose branches are dead (their last layers zeroed) is the identity, scores 0, is
dropped first, and the outputs do not change; the plan replays from JSON and through save/load;
ONNX Runtime agrees with the model without the block.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import edgeprune as ep
from edgeprune import prune_blocks
from edgeprune.graph.blocks import residual_blocks
from edgeprune.plan import Plan
from edgeprune.tasks import get_task


def _vit():
    task = get_task("mnist-vit")
    return task.build(seed=0), task.example_input(4)


def _kill(block) -> None:
    """Zero the last layer of both branches: the block returns its input."""
    with torch.no_grad():
        for layer in (block.attn.proj, block.mlp[2]):
            layer.weight.zero_()
            layer.bias.zero_()


def test_residual_blocks_are_found_where_the_output_is_input_plus_branches():
    model, x = _vit()
    assert residual_blocks(model, x) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]  # not the Sequential
    mobilenet = torchvision.models.mobilenet_v2().eval()
    found = residual_blocks(mobilenet, torch.randn(1, 3, 32, 32))
    assert found == [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]  # the use_res_connect blocks
    # relu(x + f(x)) over an input that is itself a ReLU output (or its max-pool): the identity is exact
    resnet = torchvision.models.resnet18().eval()
    assert residual_blocks(resnet, torch.randn(1, 3, 32, 32)) == ["layer1.0", "layer1.1", "layer2.1", "layer3.1",
                                                                   "layer4.1"]  # not the downsampling blocks


class _ReluAfterAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.relu(x + self.conv(x))


class _TwoReluBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.first = _ReluAfterAdd()  # its input, a conv output, may be negative: relu(x) != x
        self.second = _ReluAfterAdd()  # its input is the first block's ReLU output

    def forward(self, x):
        return self.second(self.first(self.stem(x)))


def test_a_relu_after_the_add_is_allowed_only_over_an_input_that_cannot_be_negative():
    assert residual_blocks(_TwoReluBlocks().eval(), torch.randn(1, 3, 8, 8)) == ["second"]


def test_a_dead_resnet_block_is_dropped_and_the_outputs_do_not_change():
    torch.manual_seed(0)
    model, x = torchvision.models.resnet18(num_classes=10).eval(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # layer1.1's branch adds nothing: relu(x + 0) = x for its ReLU-made input
        model.layer1[1].bn2.weight.zero_()
        model.layer1[1].bn2.bias.zero_()
        reference = model(x)
    result = ep.prune(model, x, kind="blocks", n=1)
    assert result.plan.blocks == ["layer1.1"]
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), reference, rtol=1e-5, atol=1e-6)


def test_a_dead_block_scores_zero_is_dropped_first_and_the_outputs_do_not_change():
    model, x = _vit()
    _kill(model.blocks[2])
    with torch.no_grad():
        reference = model(x)
    result = ep.prune(model, x, kind="blocks", ratio=0.25)
    assert result.plan.kind == "blocks" and result.plan.blocks == ["blocks.2"]
    assert result.stats["influence"]["blocks.2"] == pytest.approx(0.0, abs=1e-6)
    assert min(v for k, v in result.stats["influence"].items() if k != "blocks.2") > 1e-3
    assert isinstance(result.model.blocks[2], nn.Identity) and not isinstance(model.blocks[2], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), reference, rtol=1e-5, atol=1e-6)
    assert result.stats["macs_after"] < result.stats["macs_before"]
    assert ep.verify_pruned(model, result.model, x).ok


def test_a_block_plan_replays_from_json_and_through_save_and_load(tmp_path):
    model, x = _vit()
    result = ep.prune(model, x, kind="blocks", ratio=0.5)
    assert len(result.plan.blocks) == 2
    replayed = ep.apply_plan(copy.deepcopy(model), Plan.from_json(result.plan.to_json()))
    loaded = ep.load(ep.save(result, tmp_path / "vit.edgeprune"), model=get_task("mnist-vit").build(seed=0))
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), result.model(x))
        torch.testing.assert_close(loaded(x), result.model(x))


def test_block_plans_that_do_not_fit_are_refused_before_anything_changes():
    model, x = _vit()
    with pytest.raises(ep.PlanError, match="lacks"):
        ep.apply_plan(model, Plan(kind="blocks", blocks=["blocks.1", "blocks.9"]), inplace=True)
    assert not any(isinstance(b, nn.Identity) for b in model.blocks)
    once = ep.apply_plan(model, Plan(kind="blocks", blocks=["blocks.1"]))
    with pytest.raises(ep.PlanError, match="already an identity"):
        ep.apply_plan(once, Plan(kind="blocks", blocks=["blocks.1"]))
    with pytest.raises(ep.UnsupportedModelError, match="no residual block"):
        ep.prune(torchvision.models.vgg11(), torch.randn(1, 3, 32, 32), kind="blocks")  # no residual add at all
    with pytest.raises(ep.BudgetError, match="cannot be met"):
        ep.prune(model, x, kind="blocks", budget=ep.Budget(macs=0.1))  # patch embedding + head alone exceed it


def test_a_mac_budget_drops_the_fewest_blocks_that_meet_it():
    model, x = _vit()
    fraction = {k: (lambda r: r.stats["macs_after"] / r.stats["macs_before"])(prune_blocks(model, x, n=k))
                for k in range(4)}
    for limit in (0.9, 0.6, 0.4):
        result = ep.prune(model, x, kind="blocks", budget=ep.Budget(macs=limit))
        fewest = min(k for k, f in fraction.items() if f <= limit)
        assert len(result.plan.blocks) == fewest and fraction[fewest] <= limit


def test_a_latency_target_is_measured_on_onnx_runtime_and_refused_when_out_of_reach():
    # the logic, not the machine: speed-up 1 is met by the dense model itself, 100x by nothing
    model, x = _vit()
    x = x[:1]
    kept = prune_blocks(model, x, budget=ep.Budget(speedup=1.0, threads=1))
    assert kept.plan.blocks == [] and set(kept.stats["latency_ms"]) == {f"{k} dropped" for k in range(4)}
    with pytest.raises(ep.BudgetError, match="cannot be met by dropping residual blocks"):
        prune_blocks(model, x, budget=ep.Budget(speedup=100.0, threads=1))
    with pytest.raises(ValueError, match="exactly one"):
        prune_blocks(model, x, n=1, budget=ep.Budget(speedup=2.0))
