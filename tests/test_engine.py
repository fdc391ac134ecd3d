"""The engine's safety behaviour: baked sizes, unknown ops, plans that replay or refuse."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgeprune as ep
from edgeprune.graph import default_rules
from edgeprune.graph.spaces import Seg, SpaceTable
from tests import zoo


class BakedReshape(nn.Module):
    """``reshape(B, 16, -1)`` bakes conv2's width into the forward code."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.conv2(F.relu(self.conv1(x)))
        return self.fc(x.reshape(x.shape[0], 16, -1).mean(-1))


class AssertedWidth(nn.Module):
    """A Python assert on a stored width, outside any tensor op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 12, 3)
        self.width = 12
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        x = self.conv2(F.relu(self.conv1(x)))
        assert x.shape[1] == self.width, "width changed"
        return self.fc(x.mean((2, 3)))


class PixelShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.pixel_shuffle(self.conv1(x), 2))))


def test_baked_reshape_is_left_alone_and_named():
    model = BakedReshape().eval()
    x = torch.randn(2, 3, 8, 8)
    result = ep.prune(model, x, ratio=0.5)
    assert result.model.conv2.out_channels == 16
    assert result.model.conv1.out_channels == 4
    assert "reshape" in result.skipped["conv2"] and "conv2" not in [g.name for g in result.plan.groups]
    assert result.model(x).shape == (2, 4)


def test_assert_on_width_is_left_alone():
    model = AssertedWidth().eval()
    x = torch.randn(1, 3, 10, 10)
    result = ep.prune(model, x, ratio=0.5)
    assert result.model.conv2.out_channels == 12 and result.model.conv1.out_channels == 4
    assert result.model(x).shape == (1, 2)


def test_unknown_op_blocks_its_neighbours_and_is_reported():
    model = PixelShuffle().eval()
    x = torch.randn(1, 3, 6, 6)
    result = ep.prune(model, x, ratio=0.5)
    assert "pixel_shuffle" in result.stats["unknown_ops"]
    assert "no rule" in result.skipped["conv1"]
    assert result.model.conv1.out_channels == 16 and result.model.conv2.out_channels == 4


def test_custom_rule_makes_an_unknown_op_prunable_locally():
    rules = default_rules().copy()

    def shuffle_rule(ctx, args, kwargs, out):  # treat as opaque but keep the batch dim: still safe
        for dm in ctx.dims(args[0]):
            ctx.block(dm, "custom rule: pixel shuffle")
        ctx.set_dims(out, tuple((Seg(None, n),) for n in out.shape))

    rules.register("pixel_shuffle", shuffle_rule)
    result = ep.prune(PixelShuffle().eval(), torch.randn(1, 3, 6, 6), ratio=0.5, rules=rules)
    assert "custom rule" in result.skipped["conv1"] and not result.stats["unknown_ops"]
    assert "pixel_shuffle" not in default_rules()._rules  # the default registry is untouched


def test_plan_json_replays_on_a_fresh_copy():
    torch.manual_seed(0)
    model = zoo.DenseConcat().eval()
    fresh = copy.deepcopy(model)
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.4, criterion="l1")
    replayed = ep.apply_plan(fresh, result.plan.to_json())
    a, b = result.model.state_dict(), replayed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(result.model(x), replayed(x))
    assert ep.plan.plans_of(replayed)[0].to_dict() == result.plan.to_dict()


def test_plan_that_does_not_fit_is_refused_without_damage():
    model = zoo.ResidualCNN().eval()
    plan = ep.prune(model, zoo.example_input(model), ratio=0.5).plan
    other = zoo.MLP()
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ep.PlanError, match="lacks"):
        ep.apply_plan(other, plan, inplace=True)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    pruned = ep.apply_plan(model, plan)
    with pytest.raises(ep.PlanError, match="expects"):
        ep.apply_plan(pruned, plan)
    with pytest.raises(ep.PlanError, match="not an edgeprune plan"):
        ep.Plan.from_json('{"kind": "channels"}')


def test_global_strategy_and_round_to():
    model = zoo.ResidualCNN().eval()
    x = zoo.example_input(model)
    result = ep.prune(model, x, ratio=0.5, strategy="global")
    removed = result.plan.removed_units
    total = sum(g.size for g in ep.analyze(model, x).groups)
    assert 0.3 * total <= removed <= 0.5 * total
    rounded = ep.prune(model, x, ratio=0.4, round_to=8).model
    assert rounded.stem[0].out_channels % 8 == 0 and rounded.b1.out_channels % 8 == 0


def test_bad_arguments_are_named():
    model, x = zoo.MLP(), torch.randn(2, 20)
    with pytest.raises(ValueError, match="ratio"):
        ep.prune(model, x, ratio=1.5)
    with pytest.raises(ValueError, match="criterion"):
        ep.prune(model, x, criterion="l7")
    with pytest.raises(ValueError, match="strategy"):
        ep.prune(model, x, strategy="vibes")


def test_space_table_splits_concatenations():
    spaces = SpaceTable()
    a, b, w = spaces.new_map(4, "a"), spaces.new_map(6, "b"), spaces.new_map(10, "w")
    spaces.unify(w, a + b, "cat")
    resolved = spaces.resolve(w)
    assert [s.size for s in resolved] == [4, 6]
    c = spaces.new_map(10, "c")
    spaces.unify(c, w, "add")
    assert spaces.resolve(c) == spaces.resolve(w) and len(spaces.resolve(c)) == 2


class NormsAnd3D(nn.Module):
    """Group norm (channels pruned evenly per group), instance norm, a 3D conv and a PReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.c3d = nn.Conv3d(2, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm3d(8, affine=True)
        self.c2d = nn.Conv2d(8, 32, 3, padding=1)
        self.gn = nn.GroupNorm(4, 32)
        self.act = nn.PReLU(32)
        self.out = nn.Conv2d(32, 3, 1)

    def forward(self, x):
        x = self.inorm(self.c3d(x)).mean(2)  # (B, 8, D, H, W) -> (B, 8, H, W)
        return self.out(self.act(self.gn(self.c2d(x))))


def test_norms_and_3d_convs_prune_into_valid_modules():
    model = NormsAnd3D().eval()
    x = torch.randn(1, 2, 4, 6, 6)
    pruned = ep.prune(model, x, ratio=0.5).model
    assert pruned.gn.num_channels == 16 and pruned.gn.num_groups == 4 and pruned.act.num_parameters == 16
    assert pruned.c3d.out_channels == 4 and pruned.inorm.num_features == 4 and pruned.c2d.in_channels == 4
    assert pruned(x).shape == model(x).shape
    groups = {g.name: g for g in ep.analyze(model, x).groups}
    assert groups["c2d"].partitions == 4


def test_detection_model_with_value_dependent_postprocessing_prunes():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(num_classes=3, weights_backbone=None).eval()
    images = ([torch.rand(3, 128, 128)],)
    result = ep.prune(model, images, ratio=0.5)
    with torch.no_grad():
        detections = result.model(*images)
    assert set(detections[0]) == {"boxes", "scores", "labels"}
    assert sum(p.numel() for p in result.model.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())


class ScriptedBlock(nn.Module):
    """A TorchScript submodule: its ops run outside Python, so only the probe can see its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3)
        self.block = torch.jit.script(nn.Sequential(nn.Conv2d(16, 16, 3), nn.ReLU()))
        self.conv3 = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv3(self.block(self.conv1(x)))).mean((2, 3)))


def test_torchscript_submodule_inputs_are_kept_by_the_probe():
    model = ScriptedBlock().eval()
    x = torch.randn(1, 3, 10, 10)
    result = ep.prune(model, x, ratio=0.5)
    assert result.model.conv1.out_channels == 16 and "outside any traced op" in result.skipped["conv1"]
    assert result.model.conv3.out_channels == 4
    assert result.model(x).shape == (1, 2)


class StandardizedConv(nn.Conv2d):
    """Weight standardisation (as NF-Nets and BiT do): the conv runs a weight computed in forward."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                         eps=1e-5).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_weights_computed_in_forward_still_prune():
    model = nn.Sequential(StandardizedConv(3, 16, 3, padding=1), nn.ReLU(), StandardizedConv(16, 8, 3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(1, 3, 8, 8)
    pruned = ep.prune(model, x, ratio=0.5).model
    assert pruned[0].out_channels == 8 and pruned[2].in_channels == 8 and pruned[2].out_channels == 4
    assert pruned(x).shape == (1, 2)
