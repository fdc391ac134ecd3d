"""Save/load: a loaded model gives the saved model's outputs exactly; bad saves fail cleanly."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torchvision

import edgeprune as ep
from edgeprune.export.saving import META_FILE, WEIGHTS_FILE, LoadError, load, save
from edgeprune.plan import GroupPlan, Plan, Slot, plans_of
from edgeprune.specs import load_model, spec_of
from edgeprune.surgery import apply_plan


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def hand_plan() -> Plan:
    """Remove hidden units 1 and 5 of ``mlp()``."""
    return Plan(kind="channels", groups=[GroupPlan(
        name="0", size=16, remove=[1, 5],
        slots=[Slot("0.weight", 0, "out"), Slot("0.bias", 0, "channel"), Slot("2.weight", 1, "in")])],
        shapes={"0.weight": [16, 8], "0.bias": [16], "2.weight": [4, 16]})


def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unpruned_spec_model_loads_alone(tmp_path):
    model = load_model("torchvision:resnet18")
    with torch.no_grad():
        model.fc.bias.add_(1.0)  # weights differ from a fresh build: they must come from the file
    path = save(model, tmp_path / "r18")
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]  # no pickle anywhere
    loaded = load(path)
    assert spec_of(loaded) == "torchvision:resnet18" and plans_of(loaded) == []
    assert same_outputs(model, loaded, torch.randn(1, 3, 32, 32))


def test_hand_made_plan_round_trip(tmp_path):
    pruned = apply_plan(mlp(), hand_plan())
    assert pruned[0].out_features == 14
    meta_plans = None
    path = save(pruned, tmp_path / "mlp")
    meta = json.loads((path / META_FILE).read_text())
    meta_plans = meta["plans"]
    assert meta["spec"] is None and meta_plans == [hand_plan().to_dict()]
    fresh = mlp()
    loaded = load(path, model=fresh)
    assert loaded[0].weight.shape == (14, 8) and plans_of(loaded) == [hand_plan()]
    assert same_outputs(pruned, loaded, torch.randn(5, 8))
    assert fresh[0].weight.shape == (16, 8) and plans_of(fresh) == []  # the caller's model is untouched


def test_without_spec_a_model_is_required(tmp_path):
    path = save(apply_plan(mlp(), hand_plan()), tmp_path / "mlp")
    with pytest.raises(LoadError, match="pass the unpruned model"):
        load(path)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_pruned_torchvision_round_trip(tmp_path, name):
    x = torch.randn(1, 3, 32, 32)
    result = ep.prune(torchvision.models.get_model(name).eval(), x, ratio=0.3)
    path = save(result, tmp_path / name)
    loaded = load(path, model=torchvision.models.get_model(name))
    assert plans_of(loaded) == [result.plan]
    assert same_outputs(result.model, loaded, torch.randn(2, 3, 32, 32))


def test_pruned_spec_model_round_trip_without_model(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    result = ep.prune(load_model("torchvision:resnet18"), x, ratio=0.3)
    loaded = load(save(result.model, tmp_path / "r18"))
    assert spec_of(loaded) == "torchvision:resnet18"
    assert same_outputs(result.model, loaded, x)


def test_pruned_mlp_round_trip_and_result_notes(tmp_path):
    result = ep.prune(mlp(), torch.randn(1, 8), ratio=0.3)
    path = save(result, tmp_path / "mlp")
    assert "result" in json.loads((path / META_FILE).read_text())
    assert same_outputs(result.model, load(path, model=mlp()), torch.randn(3, 8))


def test_masked_model_round_trip_keeps_masks(tmp_path):
    from edgeprune.surgery.masks import is_masked, masks_of

    def deep() -> nn.Module:  # first and last layers stay dense by default: mask the middle ones
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                             nn.ReLU(), nn.Linear(32, 4)).eval()

    result = ep.prune(deep(), torch.randn(1, 8), ratio=0.5, kind="weights")
    assert result.plan.masks
    loaded = load(save(result, tmp_path / "sparse"), model=deep())
    assert is_masked(loaded)
    assert masks_of(loaded).keys() == masks_of(result.model).keys()
    assert all(torch.equal(masks_of(loaded)[k], masks_of(result.model)[k]) for k in masks_of(loaded))
    assert same_outputs(result.model, loaded, torch.randn(3, 8))


def test_finalized_sparse_model_round_trip_is_plain(tmp_path):
    from edgeprune.surgery.masks import finalize, is_masked

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    fresh = copy.deepcopy(model)
    result = ep.prune(model, torch.randn(2, 16), kind="weights", sparsity=0.8)
    assert result.plan.masks
    pruned = finalize(result.model)
    loaded = load(save(pruned, tmp_path / "plain"), model=fresh)
    x = torch.randn(3, 16)
    assert not is_masked(loaded)
    assert torch.equal(loaded(x), pruned(x))


def test_two_plans_replay_in_order(tmp_path):
    first = apply_plan(mlp(), hand_plan())
    second = Plan(kind="channels", groups=[GroupPlan(
        name="0", size=14, remove=[0],
        slots=[Slot("0.weight", 0, "out"), Slot("0.bias", 0, "channel"), Slot("2.weight", 1, "in")])],
        shapes={"0.weight": [14, 8]})
    twice = apply_plan(first, second)
    loaded = load(save(twice, tmp_path / "twice"), model=mlp())
    assert loaded[0].out_features == 13 and len(plans_of(loaded)) == 2
    assert same_outputs(twice, loaded, torch.randn(2, 8))


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(self.emb(ids))

    model = Tied()
    path = save(model, tmp_path / "tied")
    assert json.loads((path / META_FILE).read_text())["aliases"] == {"head.weight": "emb.weight"}
    loaded = load(path, model=Tied())
    assert loaded.head.weight is loaded.emb.weight
    assert same_outputs(model, loaded, torch.tensor([[1, 2, 3]]))


# -- failures -----------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    return save(apply_plan(mlp(), hand_plan()), tmp_path / "mlp")


def test_truncated_weights_fail_clearly(saved):
    w = saved / WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(LoadError, match="truncated, corrupt or was changed"):
        load(saved, model=mlp())


def test_flipped_byte_fails_clearly(saved):
    w = saved / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="sha256"):
        load(saved, model=mlp())


def test_corrupt_json_and_wrong_version_fail_clearly(saved):
    meta = saved / META_FILE
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(LoadError, match="not valid JSON"):
        load(saved, model=mlp())
    data = json.loads(text)
    data["version"] = 99
    meta.write_text(json.dumps(data))
    with pytest.raises(LoadError, match="version 99"):
        load(saved, model=mlp())


def test_missing_files_fail_clearly(saved, tmp_path):
    with pytest.raises(LoadError, match="not an edgeprune save"):
        load(tmp_path / "nowhere", model=mlp())
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(LoadError, match="missing"):
        load(saved, model=mlp())


def test_weights_with_a_valid_checksum_but_wrong_shape_fail_strictly(saved):
    # someone rewrites the weights and the checksum consistently: names and shapes still must match
    from safetensors.torch import load_file, save_file

    from edgeprune.export.saving import _sha256

    w = saved / WEIGHTS_FILE
    state = load_file(str(w))
    state["2.weight"] = torch.zeros(4, 15)
    save_file(state, str(w))
    meta = json.loads((saved / META_FILE).read_text())
    meta["weights"]["sha256"] = _sha256(w)
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(LoadError, match=r"'2.weight' is saved as \[4, 15\]"):
        load(saved, model=mlp())
    state.pop("2.weight")
    save_file(state, str(w))
    meta["weights"]["sha256"] = _sha256(w)
    (saved / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(LoadError, match=r"missing \['2.weight'\]"):
        load(saved, model=mlp())


def test_plan_that_does_not_fit_fails_and_leaves_the_model_untouched(saved):
    other = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()  # another width
    before = copy.deepcopy(other)
    with pytest.raises(LoadError, match="does not fit") as info:
        load(saved, model=other)
    assert isinstance(info.value.__cause__, ep.PlanError)
    assert state_equal(before, other) and plans_of(other) == []


def test_resnet_plan_on_mobilenet_fails(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    result = ep.prune(torchvision.models.resnet18().eval(), x, ratio=0.3)
    path = save(result, tmp_path / "r18")
    with pytest.raises(LoadError, match="does not fit"):
        load(path, model=torchvision.models.mobilenet_v2())


def test_already_pruned_model_is_refused(saved):
    with pytest.raises(LoadError, match="unpruned original"):
        load(saved, model=apply_plan(mlp(), hand_plan()))


def test_save_replaces_a_save_and_refuses_other_files(tmp_path):
    target = tmp_path / "out"
    save(mlp(), target)
    second = apply_plan(mlp(), hand_plan())
    save(second, target)  # replaced whole
    assert load(target, model=mlp())[0].out_features == 14
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directories left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        save(mlp(), other)
    assert (other / "mine.txt").read_text() == "keep me"
