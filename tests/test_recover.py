"""Recovery: the distillation loss on hand-computed cases, early stopping keeps the best epoch,
BatchNorm recalibration, and GradualPruner's cuts inside a training loop (optimizer rebuilt,
state sliced like the weights, schedule followed, budget met)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.budget import Budget
from edgeprune.measure import count_macs
from edgeprune.plan import plans_of
from edgeprune.recover import Distill, Finetune, GradualPruner, distill_loss, finetune, kd_loss, recalibrate_bn
from edgeprune.schedule import scheduled_amount


def test_kd_loss_on_hand_computed_cases():
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # T = 1: p_t = (σ(-1), σ(1)), p_s = (σ(1), σ(-1)); KL = (σ(1) - σ(-1)) * ln(σ(1)/σ(-1)) = tanh(1/2) * 1
    assert float(kd_loss(s, t, 1.0)) == pytest.approx(math.tanh(0.5) * 1.0, rel=1e-6)
    # T = 2: the logits halve, so the log-ratio is 1/2 and the difference tanh(1/4); times T^2 = 4
    assert float(kd_loss(s, t, 2.0)) == pytest.approx(math.tanh(0.25) * 0.5 * 4, rel=1e-6)
    # three classes, by the definition: sum p_t * (log p_t - log p_s) * T^2, averaged over the batch
    s3 = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    t3 = torch.tensor([[0.0, 1.0, 3.0], [1.0, 2.0, 3.0]])
    T = 3.0
    expected = 0.0
    for row_s, row_t in zip(s3.tolist(), t3.tolist()):
        zs = [math.exp(v / T) for v in row_s]
        zt = [math.exp(v / T) for v in row_t]
        ps, pt = [v / sum(zs) for v in zs], [v / sum(zt) for v in zt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    assert float(kd_loss(s3, t3, T)) == pytest.approx(expected / 2 * T * T, rel=1e-6)
    assert float(kd_loss(t3, t3, T)) == pytest.approx(0.0, abs=1e-6)


def test_distill_loss_mixes_soft_and_hard_terms():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    cfg = Distill(temperature=2.0, alpha=0.3)
    expected = 0.3 * kd_loss(s, t, 2.0) + 0.7 * F.cross_entropy(s, y)
    torch.testing.assert_close(distill_loss(s, t, y, cfg), expected)
    with pytest.raises(ValueError):
        Distill(alpha=1.5)


def test_early_stopping_keeps_the_best_epochs_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    scores, snapshots = iter([50.0, 60.0, 55.0, 54.0, 99.0]), []

    def evaluate(m, loader):
        snapshots.append(m.weight.detach().clone())
        return next(scores)

    log = finetune(model, Finetune(data, epochs=5, lr=1e-2, val_loader=data, patience=2, evaluate=evaluate))
    assert log.val_scores == [50.0, 60.0, 55.0, 54.0] and log.best_epoch == 1 and log.stopped_early
    torch.testing.assert_close(model.weight.detach(), snapshots[1])


def test_split_finetuning_continues_one_cosine_with_lr_window():
    # A loss with a constant gradient: every AdamW step moves the weight by that step's learning rate.
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    config = Finetune([(torch.ones(1, 1), torch.zeros(1))], lr=0.1, loss_fn=lambda m, x, y: m(x).sum())
    cosine = [0.05 * (1 + math.cos(math.pi * t / 10)) for t in range(10)]
    finetune(model, config, max_steps=4, lr_window=(0, 10))
    assert model.weight.item() == pytest.approx(-sum(cosine[:4]), rel=1e-4)
    finetune(model, config, max_steps=6, lr_window=(4, 10))
    assert model.weight.item() == pytest.approx(-sum(cosine), rel=1e-4)
    restarted = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        restarted.weight.fill_(0.0)
    finetune(restarted, config, max_steps=6)  # no window: a cosine of its own, from lr again
    assert restarted.weight.item() == pytest.approx(-sum(0.05 * (1 + math.cos(math.pi * t / 6)) for t in range(6)),
                                                    rel=1e-4)
    with pytest.raises(ValueError, match="does not hold"):
        finetune(model, config, max_steps=6, lr_window=(8, 10))


def test_finetune_with_distillation_counts_teacher_passes():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    log = finetune(student, Finetune(data, epochs=2, lr=1e-2, distill=Distill()), teacher=teacher)
    assert (log.steps, log.backward, log.teacher_forward) == (6, 6, 6)
    with pytest.raises(ValueError, match="teacher"):
        finetune(student, Finetune(data, distill=Distill()))


def test_recalibrated_batchnorm_matches_the_data_statistics():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5))
    data = [torch.randn(16, 2, 4, 4) * 2 + 1 for _ in range(3)]
    recalibrate_bn(model, data, batches=None)
    with torch.no_grad():
        y = torch.cat([model[0](x) for x in data])
    torch.testing.assert_close(model[1].running_mean, y.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not model.training and model[1].momentum == 0.1


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                                      lambda p: torch.optim.AdamW(p, lr=1e-2)], ids=["sgd", "adamw"])
def test_gradual_pruner_rebuilds_the_optimizer_with_sliced_state(make_opt):
    torch.manual_seed(0)
    model, x = _mlp(), torch.randn(1, 8)
    opt = make_opt(model.parameters())
    pruner = GradualPruner(model, x, Budget(macs=0.4), start=2, end=8, every=2, optimizer=opt)
    base = count_macs(model, x).total
    amounts = []
    for step in range(12):
        xb, yb = torch.randn(16, 8), torch.randint(0, 3, (16,))
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        w_before = model[0].weight
        state_before = {k: v.clone() for k, v in opt.state[w_before].items() if torch.is_tensor(v) and v.dim()}
        if pruner.step():
            plan = pruner.plans_[-1]
            group = next((g for g in plan.groups if any(s.tensor == "0.weight" and s.role == "out" for s in g.slots)), None)
            if group is not None:
                kept = torch.tensor(group.kept())
                for key, value in state_before.items():  # momentum / Adam moments of surviving rows carried over
                    torch.testing.assert_close(opt.state[model[0].weight][key], value.index_select(0, kept))
        amounts.append(pruner.amount_)
        assert all(p is q for p, q in zip(opt.param_groups[0]["params"], model.parameters()))
    n = 3  # pruning steps at 2 + 2k for k = 1..3, the schedule held in between
    assert amounts == pytest.approx([scheduled_amount(t, 1.0, start=2, every=2, n=n) for t in range(12)])
    assert count_macs(model, x).total <= 0.4 * base
    assert len(plans_of(model)) == len(pruner.plans_) >= 2


def test_gradual_pruner_with_taylor_reads_grads_and_refuses_without_them():
    torch.manual_seed(0)
    model, x = _mlp(), torch.randn(1, 8)
    pruner = GradualPruner(model, x, Budget(params=0.5), start=0, end=1, every=1, criterion="taylor")
    with pytest.raises(ValueError, match="backward"):
        pruner.step(), pruner.step()
    F.cross_entropy(model(torch.randn(4, 8)), torch.tensor([0, 1, 2, 0])).backward()
    assert pruner.step() and sum(p.numel() for p in model.parameters()) <= 0.5 * (8 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3)
