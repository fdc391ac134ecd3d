"""Which slots a criterion reads, and one contract over the whole criteria registry.

Magnitude scores come from learnable weights only: BatchNorm running statistics are data
statistics that are sliced with the channels, not weights, so a unit with a huge running variance
but tiny weights goes first, and perturbing the statistics changes no weight-only score. ``l2`` is
the norm of all of a unit's weights, which ranks as Torch-Pruning's group magnitude does (checked
against it). Every criterion in ``CRITERIA`` then passes the same checks on a conv+BN+residual
model and on an MLP.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.criteria import CRITERIA, Magnitude, ScoreContext, needs_of
from edgeprune.criteria.data import collect
from edgeprune.surgery import named_tensors
from tests import zoo

MAGNITUDE = ("l1", "l2", "l1-out", "l2-out")


def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 4, 3, padding=1)).eval()


def _scores(model: nn.Module, x: torch.Tensor, name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    ctx = ScoreContext(named_tensors(model), seed=seed)
    return {g.name: CRITERIA[name](g, ctx) for g in ep.analyze(model, x).groups}


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_tiny_weights_with_a_huge_running_variance_go_first(name):
    model, x = _conv_bn(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].running_mean.uniform_(-1, 1)
        model[1].bias.uniform_(-1, 1)
        model[0].weight[2] *= 1e-3            # unit 2: tiny producer filter ...
        model[1].weight[2] = 1e-3             # ... tiny gamma ...
        model[3].weight[:, 2] *= 1e-3         # ... tiny consumer slice
        model[1].running_var[2] = 1e6         # but a huge running variance
        model[1].running_mean[2] = 1e3
    assert int(_scores(model, x, name)["0"].argmin()) == 2
    result = ep.prune(model, x, ratio=1 / 6, criterion=name, strategy="uniform")
    assert result.plan.groups[0].remove == [2]  # pruned first


@pytest.mark.parametrize("name", sorted(n for n in CRITERIA if not needs_of(CRITERIA[n])))
def test_buffers_do_not_change_weight_only_scores(name):
    model, x = zoo.ResidualCNN().eval(), torch.randn(2, 3, 16, 16)
    before = _scores(model, x, name)
    torch.manual_seed(1)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for n, b in perturbed.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.rand_like(b) * 1e4)  # running means and variances: arbitrary, large
            else:
                b.fill_(12345)                     # num_batches_tracked
    after = _scores(perturbed, x, name)
    assert before.keys() == after.keys()
    for g in before:
        assert torch.equal(before[g], after[g]), g
        assert torch.equal(before[g].argsort(stable=True), after[g].argsort(stable=True)), g


def test_l2_is_the_norm_of_all_the_units_weights():
    # Written out by hand for the conv -> BN -> conv group: producer filter, gamma, consumer slice,
    # as one vector (divided by the square root of the slot count); running statistics and biases
    # (the conv's bias, BatchNorm's beta) are left out.
    model, x = _conv_bn(), torch.randn(2, 3, 8, 8)
    conv, bn, nxt = model[0], model[1], model[3]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    parts = [conv.weight.flatten(1), bn.weight[:, None], nxt.weight.transpose(0, 1).flatten(1)]
    expected = (torch.cat(parts, 1).norm(dim=1) / 3 ** 0.5).detach()
    torch.testing.assert_close(_scores(model, x, "l2")["0"], expected)
    torch.testing.assert_close(_scores(model, x, "l2-out")["0"], conv.weight.flatten(1).norm(dim=1).detach())
    torch.testing.assert_close(_scores(model, x, "l1")["0"], (torch.cat(parts, 1).abs().sum(1) / 3).detach())


def test_l2_ranks_as_torch_pruning_group_magnitude():
    # Torch-Pruning 1.6's GroupMagnitudeImportance(p=2) (without its final division by the mean):
    # per coupled layer the sum of w^2 over the unit's slice, BatchNorm weight only, averaged over
    # layers. Our l2 is its square root, group by group, on a residual CNN with projected shortcuts.
    import torch_pruning as tp

    model, x, _ = _residual()
    ctx = ScoreContext(named_tensors(model))
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    theirs = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    modules = dict(model.named_modules())
    groups = ep.analyze(model, x).groups
    assert len(groups) == 4
    for g in groups:
        layer = modules[g.name]
        fn = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
        ref = theirs(graph.get_pruning_group(layer, fn, idxs=list(range(g.size))))
        torch.testing.assert_close(CRITERIA["l2"](g, ctx).pow(2), ref.float(), rtol=1e-4, atol=1e-6)


def test_normalized_slots_have_one_vote_whatever_their_scale():
    # normalize="mean": scaling one coupled tensor as a whole (the consumer conv, or the BatchNorm's
    # gamma) scales every unit's slice in that slot alike, and the scores do not move. The default
    # (the norm of all the unit's weights) lets the larger tensor weigh more, so there they do.
    model, x = _conv_bn(), torch.randn(2, 3, 8, 8)
    g = ep.analyze(model, x).groups[0]
    balanced, plain = Magnitude(p=2, normalize="mean"), Magnitude(p=2)
    ctx0 = ScoreContext(named_tensors(model))
    for tensor in ("3.weight", "1.weight"):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            named_tensors(scaled)[tensor].mul_(1e3)
        ctx1 = ScoreContext(named_tensors(scaled))
        torch.testing.assert_close(balanced(g, ctx1), balanced(g, ctx0))
        assert not torch.allclose(plain(g, ctx1), plain(g, ctx0))


def test_bad_magnitude_options_are_named():
    with pytest.raises(ValueError, match="normalize"):
        Magnitude(normalize="max")


# ---- one contract over every criterion in the registry --------------------------------------------

class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                                 nn.Linear(12, 3))

    def forward(self, x):
        return self.net(x)


def _residual():
    torch.manual_seed(0)
    model = zoo.ResidualCNN()
    with torch.no_grad():  # statistics and scales that are not all alike
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.2, 2.0)
    x = torch.randn(4, 3, 16, 16)
    return model.eval(), x, [(x, torch.randint(0, 10, (4,))), (torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))]


def _mlp():
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    return MLP().eval(), x, [(x, torch.randint(0, 3, (6,))), (torch.randn(6, 8), torch.randint(0, 3, (6,)))]


def _context(model, data, crit, seed):
    needs = needs_of(crit)
    return collect(model, data, needs).context(model, seed) if needs else ScoreContext(named_tensors(model), seed=seed)


@pytest.mark.parametrize("model_fn", [_residual, _mlp], ids=["conv-bn-residual", "mlp"])
@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_criterion_contract(name, model_fn):
    model, x, data = model_fn()
    crit = CRITERIA[name]
    groups = ep.analyze(model, x).groups
    assert groups
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = _context(model, data, crit, seed=3)
    scores = {g.name: crit(g, ctx) for g in groups}
    for g in groups:
        s = scores[g.name]
        assert s.shape == (g.size,) and s.dtype.is_floating_point and torch.isfinite(s).all(), g.name
        torch.testing.assert_close(crit(g, ctx), s)  # scoring twice from one context: the same
    # no side effects on the model's tensors, gradients or mode
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training
    # deterministic: a fresh context with the same seed (data collected again) gives the same scores
    again = _context(model, data, crit, seed=3)
    for g in groups:
        torch.testing.assert_close(crit(g, again), scores[g.name])
    # a prune by this criterion runs and keeps the output shape
    result = ep.prune(model, x, ratio=0.3, criterion=name, data=data, seed=3)
    assert result.model(x).shape == model(x).shape
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_random_depends_on_its_seed_only():
    model, x, _ = _residual()
    a, b, c = _scores(model, x, "random", 1), _scores(model, x, "random", 1), _scores(model, x, "random", 2)
    assert all(torch.equal(a[g], b[g]) for g in a) and not all(torch.equal(a[g], c[g]) for g in a)
