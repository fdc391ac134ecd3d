"""Masks: they hold through training, finalize equals masked, remove gives values back, plans replay."""
from __future__ import annotations

import base64
import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgeprune.plan import MaskEntry, Plan, PlanError
from edgeprune.surgery.masks import (apply_masks, decode_keep, encode_keep, finalize, is_masked, masks_of,
                                     masks_to_entries, remove_masks, set_masks)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 5)
        self.scale = nn.Parameter(torch.randn(5))  # a non-layer parameter, masked on request

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(torch.relu(self.fc1(x))) * self.scale


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def _random_keep(model: nn.Module, names, seed: int = 1, density: float = 0.3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    return {n: torch.rand(sd[n].shape, generator=g) < density for n in names}


NAMES = ["conv.weight", "fc1.weight", "fc2.weight", "fc2.bias", "scale"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Hundreds of tiny steps: two threads on two busy cores run them ~10x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
], ids=["sgd-momentum-wd", "nesterov", "adam-wd", "adamw"])
def test_masks_hold_through_100_optimizer_steps(make_opt):
    model = _net()
    opt = make_opt(model.parameters())  # built before masking: the parameter objects must stay the same
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    for _ in range(5):  # build up momentum / Adam moments on every weight first
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    keep = _random_keep(model, NAMES)
    set_masks(model, keep)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        for name, k in keep.items():
            module, _, attr = name.rpartition(".")
            value = getattr(model.get_submodule(module), attr)
            assert torch.count_nonzero(value[~k]) == 0, f"{name} regrew at step {step}"
    # training really happened on the kept weights
    after = dict(model.named_parameters())
    assert not torch.equal(after["fc1.parametrizations.weight.original"], before["fc1.parametrizations.weight.original"])
    finalize(model)
    for name, k in keep.items():
        assert torch.count_nonzero(model.state_dict()[name][~k]) == 0


def test_masked_gradient_is_zero_on_masked_values():
    model = _net()
    keep = _random_keep(model, ["fc1.weight"])
    set_masks(model, keep)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    grad = model.fc1.parametrizations.weight.original.grad
    assert torch.count_nonzero(grad[~keep["fc1.weight"]]) == 0
    assert torch.count_nonzero(grad[keep["fc1.weight"]]) > 0


def test_finalize_equals_masked_and_leaves_a_plain_module():
    model = _net().eval()
    keys = list(model.state_dict().keys())
    x = torch.randn(6, 3, 8, 8)
    keep = _random_keep(model, NAMES)
    set_masks(model, keep)
    with torch.no_grad():
        masked_out = model(x)
    params_before = {id(p) for p in model.parameters()}
    finalize(model)
    with torch.no_grad():
        final_out = model(x)
    assert torch.equal(masked_out, final_out)
    assert list(model.state_dict().keys()) == keys
    assert not is_masked(model) and masks_of(model) == {}
    assert type(model.fc1) is nn.Linear and type(model.conv) is nn.Conv2d
    assert not any(m._load_state_dict_pre_hooks for m in model.modules())
    assert {id(p) for p in model.parameters()} == params_before  # an optimizer keeps working
    for name, k in keep.items():
        assert torch.equal(model.state_dict()[name] != 0, k & (model.state_dict()[name] != 0))
        assert torch.count_nonzero(model.state_dict()[name][~k]) == 0
    pickle.dumps(model)  # a finalized model pickles again


def test_remove_masks_gives_the_values_back():
    model = _net()
    original = copy.deepcopy(model.state_dict())
    set_masks(model, _random_keep(model, NAMES))
    assert is_masked(model)
    remove_masks(model)
    assert not is_masked(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_remasking_replaces_the_mask():
    model = _net()
    first = _random_keep(model, ["fc1.weight"], seed=1)
    second = _random_keep(model, ["fc1.weight"], seed=2)
    set_masks(model, first)
    set_masks(model, second)
    assert len(model.fc1.parametrizations.weight) == 1
    assert torch.equal(masks_of(model)["fc1.weight"], second["fc1.weight"])


def test_deepcopies_are_independent():
    model = _net()
    set_masks(model, _random_keep(model, NAMES))
    twin = copy.deepcopy(model)
    finalize(twin)
    x = torch.randn(2, 3, 8, 8)
    model.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))  # the original still masked and working
    assert is_masked(model) and not is_masked(twin)
    twin2 = copy.deepcopy(model)
    set_masks(twin2, _random_keep(model, ["fc1.bias"]))  # adding a mask on a copy
    assert "fc1.bias" not in masks_of(model)
    remove_masks(model)
    assert not is_masked(model) and is_masked(twin2)


def test_plain_checkpoint_loads_into_masked_model():
    dense = _net(seed=3)
    masked = _net(seed=4)
    keep = _random_keep(masked, ["fc1.weight", "conv.weight"])
    set_masks(masked, keep)
    masked.load_state_dict(dense.state_dict())  # plain keys, strict
    assert torch.equal(masked.fc1.weight, dense.fc1.weight * keep["fc1.weight"])
    masked.load_state_dict(copy.deepcopy(masked.state_dict()))  # and its own keys


def test_keep_encoding_matches_numpy_packbits():
    rng = np.random.default_rng(0)
    for shape in [(7,), (3, 5), (4, 3, 3, 3), (1,)]:
        keep = rng.random(shape) < 0.4
        text = encode_keep(torch.from_numpy(keep))
        assert base64.b64decode(text) == np.packbits(keep.reshape(-1)).tobytes()
        assert torch.equal(decode_keep(text, shape), torch.from_numpy(keep))


def test_plan_json_round_trip_applies_the_same_masks_to_a_fresh_copy():
    model = _net(seed=7).eval()
    fresh = copy.deepcopy(model)
    keep = _random_keep(model, NAMES)
    set_masks(model, keep)
    plan = Plan(kind="weights", masks=masks_to_entries(keep))
    loaded = Plan.from_json(plan.to_json())
    apply_masks(fresh, loaded)
    got = masks_of(fresh)
    assert set(got) == set(keep)
    for name in keep:
        assert torch.equal(got[name], keep[name])
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_bad_plans_fail_clearly_and_change_nothing():
    model = _net()
    good = masks_to_entries({"fc1.weight": torch.ones(32, 128, dtype=torch.bool)})
    wrong_shape = masks_to_entries({"fc2.weight": torch.ones(4, 32, dtype=torch.bool)})
    with pytest.raises(PlanError, match="fc2.weight.*shape"):
        apply_masks(model, good + wrong_shape)
    assert not is_masked(model)  # checked before anything changed
    with pytest.raises(PlanError, match="no module 'nope'"):
        apply_masks(model, masks_to_entries({"nope.weight": torch.ones(2, dtype=torch.bool)}))
    with pytest.raises(PlanError, match="no parameter 'kernel'"):
        apply_masks(model, masks_to_entries({"fc1.kernel": torch.ones(2, dtype=torch.bool)}))
    corrupt = MaskEntry(tensor="fc2.bias", shape=[5], pattern="unstructured", sparsity=0.0, keep="!!!")
    with pytest.raises(PlanError, match="base64"):
        apply_masks(model, [corrupt])
    short = MaskEntry(tensor="fc1.weight", shape=[32, 128], pattern="unstructured", sparsity=0.0,
                      keep=encode_keep(torch.ones(10, dtype=torch.bool)))
    with pytest.raises(PlanError, match="does not fit shape"):
        apply_masks(model, [short])
