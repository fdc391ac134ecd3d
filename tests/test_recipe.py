"""Recipes and targets: files equal flags, and every bad field or target is refused by name."""
from __future__ import annotations

import pytest

from edgeprune.run import RecipeError, RunRecipe, load_recipe, parse_target, recipe_from_mapping
from edgeprune.run.errors import BadInputError

FLAGS = {"model": "mnist", "data": "mnist", "target": ["macs=0.5", "size=4MB"], "max_drop": 1.0,
         "kind": "channels", "strategy": "global", "epochs": 2, "seed": 3, "input_shape": [1, 1, 28, 28]}
YAML = """
model: mnist
data: mnist
target: [macs=0.5, size=4MB]
max-drop: 1
kind: channels
strategy: global
epochs: 2
seed: 3
input_shape: 1,1,28,28
"""
TOML = """
model = "mnist"
data = "mnist"
max_drop = 1.0
kind = "channels"
strategy = "global"
epochs = 2
seed = 3
input_shape = [1, 1, 28, 28]
[target]
macs = 0.5
size = "4MB"
"""


@pytest.mark.parametrize("suffix, text", [(".yaml", YAML), (".toml", TOML)])
def test_recipe_file_equals_the_same_flags(tmp_path, suffix, text):
    path = tmp_path / f"recipe{suffix}"
    path.write_text(text)
    from_file = load_recipe(path)
    from_flags = recipe_from_mapping(FLAGS)
    assert from_file == from_flags
    assert from_file.input_shape == (1, 1, 28, 28) and from_file.target == ("macs=0.5", "size=4MB")
    assert [t.metric for t in from_file.targets] == ["macs", "size"]


def test_flags_override_the_file_and_a_recipe_round_trips(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(YAML)
    recipe = load_recipe(path, overrides={"epochs": 5, "target": ["params=0.25"]})
    assert recipe.epochs == 5 and recipe.target == ("params=0.25",) and recipe.strategy == "global"
    assert recipe_from_mapping(recipe.to_dict()) == recipe


@pytest.mark.parametrize("mapping, fragment", [
    ({"model": "mnist", "target": "macs=0.5", "epoch": 2}, "unknown field 'epoch' (did you mean 'epochs'?)"),
    ({"model": "mnist", "target": "macs=0.5", "epochs": "three"}, "field 'epochs' must be an integer"),
    ({"model": "mnist", "target": "macs=0.5", "lr": [1]}, "field 'lr' must be a number"),
    ({"model": "mnist", "target": "macs=0.5", "curve": "yes"}, "field 'curve' must be true or false"),
    ({"target": "macs=0.5"}, "field 'model' is required"),
    ({"model": "mnist", "target": "macs=0.5", "kind": "filters"}, "field 'kind' is 'filters'"),
    ({"model": "mnist", "target": "sparsity=0.5", "kind": "blocks"}, "with --kind blocks takes macs="),
    ({"model": "mnist", "target": ["speedup=2x", "macs=0.5"], "kind": "blocks"}, "a latency target stands alone"),
    ({"model": "mnist", "target": "macs=0.5", "strategy": "magic"}, "field 'strategy' is 'magic'"),
    ({"model": "mnist", "target": "macs=0.5", "criterion": "vibes"}, "field 'criterion' is 'vibes'"),
    ({"model": "mnist", "target": "macs=0.5", "epochs": -1}, "field 'epochs' must be >= 0"),
    ({"model": "mnist", "target": "macs=0.5", "max_drop": -2}, "field 'max_drop' must be >= 0"),
    ({"model": "mnist"}, "field 'target' is missing"),
    ({"model": "mnist", "target": "flops=0.5"}, "unknown metric 'flops'"),
    ({"model": "mnist", "target": "sparsity=0.9"}, "sparsity=... needs --kind weights"),
    ({"model": "mnist", "target": "macs=0.5", "kind": "weights"}, "exactly sparsity=FRACTION"),
    ({"model": "mnist", "target": "sparsity=0.9", "kind": "2:4"}, "fixed at sparsity=0.5"),
    ({"model": "mnist", "target": "macs=0.5,macs=0.4"}, "given twice"),
])
def test_bad_fields_are_refused_by_name(mapping, fragment):
    with pytest.raises(RecipeError) as info:
        recipe_from_mapping(mapping, source="r.yaml")
    assert fragment in str(info.value) and str(info.value).startswith("r.yaml")


def test_bad_files_are_refused_with_the_file_name(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="broken.yaml: not valid YAML"):
        load_recipe(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- model\n")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(listing)
    with pytest.raises(RecipeError, match="unknown recipe format '.ini'"):
        (tmp_path / "r.ini").write_text("")
        load_recipe(tmp_path / "r.ini")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, metric, value, relative, limit_of_100", [
    ("macs=0.5", "macs", 0.5, True, 50.0),
    ("macs=120M", "macs", 120e6, False, 120e6),
    ("params=2.5k", "params", 2500.0, False, 2500.0),
    ("size=4MB", "size", 4e6, False, 4e6),
    ("size=512KiB", "size", 524288.0, False, 524288.0),
    ("size=0.25", "size", 0.25, True, 25.0),
    ("sparsity=0.9", "sparsity", 0.9, False, 0.9),
    ("latency=8ms", "latency", 8.0, False, 8.0),
    ("latency=500us", "latency", 0.5, False, 0.5),
    ("speedup=2x", "speedup", 2.0, True, 50.0),
    ("latency=2x", "speedup", 2.0, True, 50.0),
])
def test_targets_parse_to_limits(text, metric, value, relative, limit_of_100):
    t = parse_target(text)
    assert (t.metric, t.relative) == (metric, relative)
    assert t.value == pytest.approx(value) and t.limit_for(100.0) == pytest.approx(limit_of_100)


@pytest.mark.parametrize("text, fragment", [
    ("macs", "not METRIC=VALUE"), ("macs=abc", "not a number"), ("macs=1", "would keep everything"),
    ("size=4", "give a unit"), ("size=4TB", "unknown unit 'tb'"), ("sparsity=1.5", "strictly between 0 and 1"),
    ("speedup=0.5x", "factor above 1"), ("latency=3h", "unknown unit 'h'"), ("macs=-0.5", "not a number"),
])
def test_bad_targets_name_the_target(text, fragment):
    with pytest.raises(BadInputError) as info:
        parse_target(text)
    assert fragment in str(info.value) and text.split("=")[0] in str(info.value)


def test_recipe_defaults_are_one_epoch_of_uniform_l2_channel_pruning():
    r = RunRecipe(model="mnist")
    assert (r.kind, r.strategy, r.criterion, r.epochs, r.threads) == ("channels", "uniform", "l2", 1, 2)
    assert not r.is_sparse and RunRecipe(model="m", kind="2:4").is_sparse
