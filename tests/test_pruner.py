"""The estimator facade is the prune path: ``Pruner(...).fit(m, x).transform(m)`` equals
``edgeprune.prune(m, x, ...)`` in outputs and plans, for every kind; and the router's contract
(the caller's model untouched, every plan kept, options refused by name) holds for every kind."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import edgeprune as ep
from edgeprune.kinds import KINDS, Blocks, Channels, Weights, make_kind
from edgeprune.tasks import get_task
from tests import zoo


def _vit():
    task = get_task("mnist-vit")
    return task.build(seed=0).eval(), task.example_input()


def _cases():
    torch.manual_seed(0)
    cnn, x = zoo.ResidualCNN().eval(), torch.randn(2, 3, 16, 16)
    mlp, xm = zoo.MLP().eval(), zoo.example_input(zoo.MLP())
    return {
        "channels": (cnn, x, dict(kind="channels", budget=ep.Budget(macs=0.5), strategy="global")),
        "channels-ratio": (cnn, x, dict(kind=Channels(criterion="l1"), ratio=0.4)),
        "heads": (*_vit(), dict(kind="channels", ratio=0.3)),
        "blocks": (*_vit(), dict(kind="blocks", budget=ep.Budget(macs=0.7))),
        "weights": (mlp, xm, dict(kind="weights", ratio=0.6)),
        "2:4": (mlp, xm, dict(kind="2:4")),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_pruner_fit_transform_equals_prune(name):
    model, x, args = CASES[name]
    args = dict(args)
    ratio, budget, kind = args.pop("ratio", None), args.pop("budget", None), args.pop("kind")
    before = copy.deepcopy(model.state_dict())
    direct = ep.prune(model, x, ratio, budget=budget, kind=kind, **args)
    pruner = ep.Pruner(kind, budget=budget, ratio=ratio, **args).fit(model, x)
    estimated = pruner.transform(model)
    assert [p.to_json() for p in pruner.plans_] == [p.to_json() for p in direct.plans]
    with torch.no_grad():
        assert torch.allclose(estimated.eval()(x), direct.model.eval()(x), atol=1e-6)
    assert pruner.report_["plans"] == len(direct.plans) >= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched


def test_pruner_recovered_weights_travel_with_transform():
    """With fine-tuning, fit learns weights as well as plans, and transform gives them back."""
    torch.manual_seed(0)
    model, x = zoo.MLP().eval(), zoo.example_input(zoo.MLP())
    train = [(torch.randn(16, *x.shape[1:]), torch.randint(0, 3, (16,))) for _ in range(4)]
    ft = ep.Finetune(train, epochs=1, lr=1e-2)
    pruner = ep.Pruner(ratio=0.5, finetune=ft).fit(model, x)
    direct = ep.prune(model, x, 0.5, finetune=ft)
    assert pruner.weights_ is not None
    with torch.no_grad():
        assert torch.allclose(pruner.transform(model)(x), direct.model(x), atol=1e-6)
        assert not torch.allclose(ep.apply_plan(model, pruner.plans_)(x), direct.model(x))  # the weights moved
    with pytest.raises(RuntimeError, match="not fitted"):
        ep.Pruner().transform(model)


def test_iterative_prune_keeps_every_step_and_never_changes_the_model():
    torch.manual_seed(0)
    model, x = zoo.ResidualCNN().eval(), torch.randn(2, 3, 16, 16)
    before = copy.deepcopy(model.state_dict())
    result = ep.prune(model, x, budget=ep.Budget(macs=0.5), strategy="iterative")
    assert len(result.plans) == 3 and [p.meta["step"] for p in result.plans] == [1, 2, 3]
    replayed = ep.apply_plan(model, result.plans)
    with torch.no_grad():
        assert torch.allclose(replayed(x), result.model(x), atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_refuses_an_option_it_does_not_take_by_name(kind):
    with pytest.raises(TypeError, match="takes no option nonsense"):
        make_kind(kind, {"nonsense": 1})
    assert make_kind(kind).name == kind


def test_kind_names_map_to_configs():
    assert make_kind("2:4") == Weights(pattern="2:4") and make_kind("unstructured") == Weights()
    assert make_kind("blocks", {"n": 2}) == Blocks(n=2)
    with pytest.raises(ValueError, match="unknown kind"):
        make_kind("filters")


def test_blocks_honour_finetune_evaluate_and_the_guard():
    """kind='blocks' goes through the same recovery and guard as channels (it used to ignore them)."""
    model, x = _vit()
    task = get_task("mnist-vit")
    train = [(torch.randn(8, *x.shape[1:]), torch.randint(0, 10, (8,))) for _ in range(2)]
    calls = []

    def evaluate(m: nn.Module) -> float:
        calls.append(1)
        return 50.0 if len(calls) == 1 else 10.0  # the original, then every pruned model

    with pytest.raises(ep.BudgetError, match="lost 40.00 accuracy points after") as info:
        ep.prune(model, x, kind="blocks", ratio=0.5, evaluate=evaluate, finetune=ep.Finetune(train, epochs=1),
                 budget=ep.Budget(max_drop=1.0), max_epochs=2)
    stats = info.value.result.stats
    assert stats["accuracy_drop"] == 40.0 and stats["recovery"]["epochs"] == 2
    assert len(stats["recovery"]["curve"]) == 2 and task.name == "mnist-vit"
