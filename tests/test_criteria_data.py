"""Data-driven criteria against brute force: Taylor is the first-order loss change of removing a
unit, Fisher is OBD's saliency from per-batch gradients, BN scale is |gamma|, activation
statistics match a manual pass. The contract every criterion meets is in tests/test_criteria_slots.py."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgeprune as ep
from edgeprune.criteria import CRITERIA, Activation, BNScale, Fisher, ScoreContext, Taylor, needs_of
from edgeprune.criteria.data import collect, collect_activations, collect_gradients
from edgeprune.surgery import named_tensors


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(F.relu(self.conv2(x)).mean((2, 3)))


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics and scales
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.1, 2.0)
    data = [(torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,))) for _ in range(3)]
    groups = {g.name: g for g in ep.analyze(model, data[0][0]).groups}
    return model, data, groups


def _mean_loss(model: nn.Module, data) -> torch.Tensor:
    return sum(F.cross_entropy(model(x), y) for x, y in data) / len(data)


def _scaled_slices(model: nn.Module, group, unit: int, factor: float) -> nn.Module:
    """A copy with every parameter slice of ``unit`` multiplied by ``factor`` (0 removes it)."""
    m = copy.deepcopy(model).double()
    tensors = named_tensors(m)
    with torch.no_grad():
        for slot in group.slots:
            t = tensors[slot.tensor]
            if isinstance(t, nn.Parameter):
                idx = torch.tensor(slot.indices([unit]))
                t.index_copy_(slot.dim, idx, t.index_select(slot.dim, idx) * factor)
    return m


@pytest.mark.parametrize("group_name", ["conv1", "conv2"])
def test_taylor_is_the_first_order_loss_change_of_removing_a_unit(group_name):
    model, data, groups = _setup()
    g = groups[group_name]
    scores = Taylor()(g, collect_gradients(model, data).context(model))
    data64 = [(x.double(), y) for x, y in data]
    with torch.no_grad():
        base = _mean_loss(copy.deepcopy(model).double(), data64)
    eps = 1e-4
    torch.set_grad_enabled(False)
    for unit in range(g.size):
        # d/d(eps) L(w - eps * w_S) at 0 = -sum_S g w: central difference of the scaled slices
        up = _mean_loss(_scaled_slices(model, g, unit, 1 - eps), data64)
        down = _mean_loss(_scaled_slices(model, g, unit, 1 + eps), data64)
        slope = (up - down) / (2 * eps)
        assert float(scores[unit]) == pytest.approx(abs(float(slope.detach())), rel=1e-3, abs=1e-6)
    # and it predicts the real loss change of removing the unit: the ranks agree on this tiny net
    changes = torch.tensor([abs(float(_mean_loss(_scaled_slices(model, g, u, 0.0), data64) - base))
                            for u in range(g.size)])
    torch.set_grad_enabled(True)
    agree = torch.corrcoef(torch.stack([scores.double(), changes]))[0, 1]
    assert agree > 0.5, f"Taylor scores do not track the loss change of removal (r={agree:.2f})"


def test_taylor_squared_is_the_mean_of_each_batchs_squared_first_order_change():
    model, data, groups = _setup()
    g = groups["conv1"]
    scores = CRITERIA["taylor-squared"](g, collect(model, data, needs_of(CRITERIA["taylor-squared"])).context(model))
    eps = 1e-4
    with torch.no_grad():
        for unit in range(g.size):
            up, down = _scaled_slices(model, g, unit, 1 - eps), _scaled_slices(model, g, unit, 1 + eps)
            slopes = [float(_mean_loss(up, [(x.double(), y)]) - _mean_loss(down, [(x.double(), y)])) / (2 * eps)
                      for x, y in data]
            expected = sum(s * s for s in slopes) / len(slopes)
            assert float(scores[unit]) == pytest.approx(expected, rel=1e-3, abs=1e-9)


def test_taylor_squared_sees_changes_that_cancel_in_the_mean_gradient():
    model, data, groups = _setup()
    x = data[0][0]
    opposite = [(x, torch.tensor(1.0)), (x, torch.tensor(-1.0))]  # the two batch losses are negatives

    def signed_sum(m, inputs, sign):
        return sign * m(inputs).sum()

    g = groups["conv1"]
    plain = Taylor()(g, collect(model, opposite, Taylor().needs, signed_sum).context(model))
    squared = Taylor(average="squares")
    per_batch = squared(g, collect(model, opposite, squared.needs, signed_sum).context(model))
    assert float(plain.abs().max()) < 1e-5 * float(per_batch.sqrt().max())
    assert bool((per_batch > 0).all())
    with pytest.raises(ValueError, match="average"):
        Taylor(average="median")


def test_fisher_is_obd_saliency_from_per_batch_gradients():
    model, data, groups = _setup()
    g = groups["conv1"]
    scores = Fisher()(g, collect_gradients(model, data).context(model))
    params = dict(model.named_parameters())
    expected = torch.zeros(g.size)
    for x, y in data:  # brute force: one backward per batch, square, average, times w^2 / 2
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for slot in g.slots:
            if slot.tensor not in params:
                continue
            p = params[slot.tensor]
            per_weight = 0.5 * p.grad.pow(2) * p.detach().pow(2) / len(data)
            for unit in range(g.size):
                expected[unit] += per_weight.index_select(slot.dim, torch.tensor(slot.indices([unit]))).sum()
    model.zero_grad()
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-9)


def test_gradient_collection_leaves_grads_and_mode_alone():
    model, data, _ = _setup()
    model.train()
    collect_gradients(model, data)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_bn_scale_is_abs_gamma_and_falls_back_to_magnitude():
    model, data, groups = _setup()
    ctx = ScoreContext(named_tensors(model))
    torch.testing.assert_close(BNScale()(groups["conv1"], ctx), model.bn1.weight.detach().abs())
    torch.testing.assert_close(BNScale()(groups["conv2"], ctx), CRITERIA["l1"](groups["conv2"], ctx))


def test_activation_statistics_match_a_manual_pass():
    model, data, groups = _setup()
    ctx = collect_activations(model, data).context(model)
    with torch.no_grad():
        pre = torch.cat([model.bn1(model.conv1(x)) for x, _ in data])  # (N, 6, H, W), what the ReLU sees
    mean = pre.clamp_min(0).mean((0, 2, 3))
    apoz = (pre <= 0).float().mean((0, 2, 3))
    torch.testing.assert_close(Activation("mean")(groups["conv1"], ctx), mean)
    torch.testing.assert_close(Activation("apoz")(groups["conv1"], ctx), 1 - apoz)


def test_data_criteria_name_what_is_missing():
    model, data, groups = _setup()
    empty = ScoreContext(named_tensors(model))
    for crit in (Taylor(), Fisher(), Activation()):
        with pytest.raises(KeyError, match="collect"):
            crit(groups["conv1"], empty)
    with pytest.raises(ValueError, match="needs data"):
        ep.prune(model, data[0][0], ratio=0.3, criterion="taylor")


def test_weight_level_taylor_and_fisher():
    model, data, _ = _setup()
    got = collect_gradients(model, data)
    ctx = got.context(model)
    w = model.conv2.weight.detach()
    torch.testing.assert_close(Taylor.weights("conv2.weight", ctx), (got.grads["conv2.weight"] * w).abs())
    torch.testing.assert_close(Fisher.weights("conv2.weight", ctx), 0.5 * got.grad_sq["conv2.weight"] * w * w)
