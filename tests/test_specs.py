"""Model specs: every form builds the model it names; bad specs fail with SpecError."""
from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn as nn

from edgeprune.specs import (SpecError, default_input, eval_mode, load_model, random_inputs, register_builtin,
                             spec_of, split_inputs)


def test_torchvision_spec_builds_the_named_model_untrained_and_in_eval():
    import torchvision

    m = load_model("torchvision:resnet18")
    ref = torchvision.models.resnet18()
    assert type(m) is type(ref) and not m.training
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert spec_of(m) == "torchvision:resnet18"


def test_timm_spec_builds_without_network_and_default_input_uses_its_config():
    m = load_model("timm:resnet18")
    assert type(m).__name__ == "ResNet" and spec_of(m) == "timm:resnet18"
    assert default_input("timm:resnet18").shape == (1, 3, 224, 224)
    assert default_input(m, (2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_import_path_spec_calls_the_factory():
    m = load_model("torch.nn:Identity")
    assert isinstance(m, nn.Identity) and spec_of(m) == "torch.nn:Identity"


def test_file_spec_calls_the_factory(tmp_path):
    f = tmp_path / "mymodel.py"
    f.write_text(textwrap.dedent("""
        import torch.nn as nn
        def build():
            return nn.Sequential(nn.Linear(5, 3), nn.ReLU())
    """))
    m = load_model(f"{f}:build")
    assert m(torch.zeros(2, 5)).shape == (2, 3)
    assert spec_of(m) == f"{f}:build"


def test_builtin_registry_gives_model_and_input_shape():
    register_builtin("test-tiny-mlp", lambda: nn.Sequential(nn.Linear(7, 2)), (4, 7))
    m = load_model("test-tiny-mlp")
    x = default_input("test-tiny-mlp")
    assert x.shape == (4, 7) and m(x).shape == (4, 2)
    assert torch.equal(x, default_input(m))  # same seed, same tensor, found through the model's spec


@pytest.mark.parametrize("spec, fragment", [
    ("nope:resnet18", "cannot import module 'nope'"),
    ("torchvision:not_a_model", "torchvision has no model"),
    ("timm:not_a_model", "timm has no model"),
    ("torch.nn:NoSuchFactory", "has no attribute 'NoSuchFactory'"),
    ("missing/file.py:build", "does not exist"),
    ("unknown-builtin", "unknown model"),
    ("torch:float32", "not callable"),
    ("", "non-empty"),
])
def test_bad_specs_raise_spec_error_naming_the_cause(spec, fragment):
    with pytest.raises(SpecError, match=fragment):
        load_model(spec)


def test_factory_returning_a_non_module_is_refused(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def build():\n    return 3\n")
    with pytest.raises(SpecError, match="not a torch.nn.Module"):
        load_model(f"{f}:build")


def test_split_inputs_forms():
    x = torch.zeros(1, 2)
    assert split_inputs(x) == ((x,), {})
    assert split_inputs((x, x)) == ((x, x), {})
    assert split_inputs({"a": x}) == ((), {"a": x})
    with pytest.raises(TypeError):
        split_inputs([1, 2])


def test_random_inputs_are_seeded_and_shaped():
    ids = torch.randint(3, 9, (1, 6))
    mask = torch.tensor([[True, True, False, True, True, False]])
    a1, k1 = random_inputs({"ids": ids, "mask": mask}, seed=1, batch_size=3)
    a2, k2 = random_inputs({"ids": ids, "mask": mask}, seed=1, batch_size=3)
    assert a1 == () and k1["ids"].shape == (3, 6) and torch.equal(k1["ids"], k2["ids"])
    assert k1["ids"].min() >= 3 and k1["ids"].max() <= 8
    assert torch.equal(k1["mask"], mask.expand(3, 6))
    (x,), _ = random_inputs(torch.rand(2, 3, 8, 8), seed=0)
    assert x.shape == (2, 3, 8, 8) and abs(float(x.mean()) - 0.5) < 0.15


def test_eval_mode_restores_each_modules_flag():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    m.train()
    m[0].eval()
    with eval_mode(m):
        assert not any(x.training for x in m.modules())
    assert m.training and not m[0].training and m[1].training


@pytest.mark.parametrize("name", ["mnist", "digits"])
def test_a_task_name_gives_the_tasks_trained_model_as_the_cli_does(name):
    from edgeprune.run.inputs import build_model
    from edgeprune.tasks import get_task, pretrained

    m = load_model(name)
    assert spec_of(m) == name and not m.training
    reference = pretrained(name, 0)  # the CLI's model for the same name
    assert m.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in m.state_dict().items())
    assert all(torch.equal(v, build_model(name).state_dict()[k]) for k, v in m.state_dict().items())
    x = default_input(m)
    assert x.shape == (1, *get_task(name).input_shape)
    assert m(x).shape == (1, 10)


def test_a_task_name_untrained_is_its_architecture_with_fresh_weights():
    from edgeprune.tasks import get_task

    m = load_model("mnist", trained=False, seed=3)
    built = get_task("mnist").build(3)
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in m.state_dict().items())
    trained = load_model("mnist")
    assert not all(torch.equal(v, trained.state_dict()[k]) for k, v in m.state_dict().items())
