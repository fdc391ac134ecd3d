"""Gradient criteria for weight pruning (Taylor, Fisher/OBD), checked against the loss itself."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import edgeprune
from edgeprune.surgery.masks import masks_of
from edgeprune import prune_weights
from edgeprune.weights import GradualWeightPruner, WeightPruneConfig, check_nm
from edgeprune.weights.config import weight_criterion


def _loss_increase_of_zeroing(model: nn.Linear, loss) -> torch.Tensor:
    """The exact change of ``loss(model)`` when each weight alone is set to zero (weight-shaped)."""
    base = loss(model)
    out = torch.empty_like(model.weight)
    with torch.no_grad():
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in model.weight.shape]):
            i = tuple(idx.tolist())
            kept = model.weight[i].item()
            model.weight[i] = 0.0
            out[i] = loss(model) - base
            model.weight[i] = kept
    return out


def _dropped(result) -> torch.Tensor:
    return ~next(iter(masks_of(result.model).values()))


def test_taylor_prunes_the_weights_whose_removal_costs_least_when_the_loss_is_linear_in_them():
    # For a loss linear in the weights the first-order Taylor estimate |g w| is exact.
    torch.manual_seed(0)
    layer = nn.Linear(5, 4, bias=False)
    x, c = torch.randn(64, 5), torch.randn(64, 4)

    def linear_loss(model, inputs, targets):
        return (model(inputs) * targets).mean()

    truth = _loss_increase_of_zeroing(layer, lambda m: linear_loss(m, x, c).item()).abs()
    config = WeightPruneConfig(0.4, criterion="taylor", protect_first=False, protect_last=False)
    result = prune_weights(layer, config=config, data=[(x, c)], loss_fn=linear_loss)
    expected = torch.zeros(truth.numel(), dtype=torch.bool)
    expected[torch.argsort(truth.reshape(-1))[:8]] = True  # 40% of 20
    assert torch.equal(_dropped(result).reshape(-1), expected)
    magnitude = prune_weights(layer, config=WeightPruneConfig(0.4, protect_first=False, protect_last=False))
    assert not torch.equal(_dropped(magnitude).reshape(-1), expected)  # the check can tell them apart


def test_fisher_ranks_like_the_exact_loss_increase_at_a_least_squares_optimum():
    # At the optimum of 0.5 * mean((Xw - y)^2) zeroing w_i raises the loss by exactly H_ii w_i^2 / 2
    # (OBD's saliency), H_ii = mean(x_i^2). With noise independent of x the empirical Fisher is
    # proportional to H, so it must drop the same weights; magnitude, fooled by the feature scales, must not.
    gen = torch.Generator().manual_seed(1)
    w_true = torch.tensor([[4.0, 2.0, 0.5, 0.2, 3.0, 0.3, 1.0, 0.1]])
    saliency = torch.tensor([1.0, 2.0, 64.0, 128.0, 4.0, 32.0, 8.0, 16.0]) * 1e-3  # factors of 2 apart
    scales = (2 * saliency).sqrt() / w_true[0]  # the biggest weights matter least
    x = torch.randn(2000, 8, generator=gen) * scales
    y = (x @ w_true.T).squeeze(1) + torch.randn(2000, generator=gen)
    layer = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.lstsq(x, y.unsqueeze(1)).solution.T)

    def mse(model, inputs, targets):
        return 0.5 * ((model(inputs).squeeze(1) - targets) ** 2).mean()

    truth = _loss_increase_of_zeroing(layer, lambda m: mse(m, x, y).item()).reshape(-1)
    obd = 0.5 * (x ** 2).mean(0) * layer.weight.detach().reshape(-1) ** 2
    assert torch.allclose(truth, obd, rtol=1e-3, atol=1e-6)  # the ground truth is OBD's formula
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 2000, 10)]
    config = WeightPruneConfig(0.5, criterion="fisher", protect_first=False, protect_last=False)
    result = prune_weights(layer, config=config, data=batches, loss_fn=mse, batches=None)
    cheapest = torch.zeros(8, dtype=torch.bool)
    cheapest[torch.argsort(truth)[:4]] = True
    assert torch.equal(_dropped(result).reshape(-1), cheapest)
    magnitude = prune_weights(layer, config=WeightPruneConfig(0.5, protect_first=False, protect_last=False))
    assert not torch.equal(_dropped(magnitude).reshape(-1), cheapest)
    assert result.stats["cost"]["backward"] == 200


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_weights_that_read_a_dead_input_go_first_and_the_outputs_do_not_change(criterion):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    with torch.no_grad():
        mlp[0].weight[:, :3] *= 10  # large, but they only ever see zeros
    x = torch.randn(32, 8)
    x[:, :3] = 0.0
    data = [(x, torch.randint(0, 3, (32,)))]
    dead = torch.zeros(6, 8, dtype=torch.bool)
    dead[:, :3] = True  # 18 of the 84 weights of the two pruned layers
    config = WeightPruneConfig(18 / 84, criterion=criterion, protect_first=False)
    result = prune_weights(mlp, config=config, data=data)
    masks = masks_of(result.model)
    assert torch.equal(~masks["0.weight"], dead) and bool(masks["2.weight"].all())
    assert torch.equal(result.model(x), mlp(x))
    magnitude = prune_weights(mlp, config=WeightPruneConfig(18 / 84, protect_first=False))
    assert not torch.equal(~masks_of(magnitude.model)["0.weight"], dead)


def test_gradient_criteria_keep_an_nm_pattern():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    data = [(torch.randn(16, 16), torch.randint(0, 4, (16,)))]
    result = prune_weights(mlp, pattern="2:4", criterion="taylor", data=data, sparsity=None)
    assert result.plan.kind == "2:4" and result.plan.meta["criterion"] == "taylor"
    weight = result.model[2].weight  # the first and last layers stay dense by default
    assert check_nm(weight, 2, 4) and int((weight == 0).sum()) == weight.numel() // 2


def test_the_top_level_prune_passes_weight_criteria_and_data():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    data = [(torch.randn(8, 8), torch.randint(0, 3, (8,)))]
    r = edgeprune.prune(mlp, torch.randn(1, 8), kind="weights", sparsity=0.5, criterion="fisher", data=data)
    assert r.plan.meta["criterion"] == "fisher" and r.stats["cost"]["backward"] == 1
    assert edgeprune.prune(mlp, torch.randn(1, 8), kind="weights", sparsity=0.5).plan.meta["criterion"] == "magnitude"


def test_bad_weight_criteria_are_refused_clearly():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(ValueError, match="pass data="):
        prune_weights(mlp, 0.5, criterion="taylor")
    with pytest.raises(ValueError, match="ranks by its own scores"):
        WeightPruneConfig(0.5, allocation="lamp", criterion="fisher")
    with pytest.raises(ValueError, match="not one of"):
        WeightPruneConfig(0.5, criterion="hessian")
    with pytest.raises(ValueError, match="no per-weight form"):
        weight_criterion("bn")
    assert weight_criterion("l2") == weight_criterion(None) == "magnitude"
    with pytest.raises(ValueError, match="needs a data pass"):
        GradualWeightPruner(mlp, WeightPruneConfig(0.5, criterion="taylor"), start=0, end=10)


def test_a_masked_model_pruned_again_by_gradients_keeps_its_zeros():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
    first = prune_weights(mlp, 0.5, criterion="magnitude")
    second = prune_weights(first.model, 0.75, criterion="fisher", data=data)
    before, after = masks_of(first.model)["2.weight"], masks_of(second.model)["2.weight"]
    assert not bool((after & ~before).any())  # nothing zeroed comes back
    assert int((~after).sum()) == round(0.75 * after.numel())


@pytest.mark.parametrize("criterion", ["taylor", "fisher"])
def test_conv_weights_that_read_a_dead_channel_go_first(criterion):
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randn(16, 3, 8, 8)
    x[:, 0] = 0.0  # input channel 0 is always dark
    dead = torch.zeros_like(cnn[0].weight, dtype=torch.bool)
    dead[:, 0] = True  # 72 of the 216 + 576 conv weights
    config = WeightPruneConfig(72 / (216 + 576), criterion=criterion, protect_first=False)
    result = prune_weights(cnn, config=config, data=[(x, torch.randint(0, 4, (16,)))])
    masks = masks_of(result.model)
    assert torch.equal(~masks["0.weight"], dead) and bool(masks["2.weight"].all())
    torch.testing.assert_close(result.model(x), cnn(x))
