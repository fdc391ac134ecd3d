"""``edgeprune profile`` through the command line."""
from __future__ import annotations

import json

import typer
from click.testing import CliRunner

from edgeprune.cli import _register_commands, app
from edgeprune.measure import Profile


def _cli():
    _register_commands()
    # get_group keeps `profile` a subcommand even while it is the app's only command
    return typer.main.get_group(app)


def test_profile_json_parses_and_counts_match_the_model():
    import torchvision

    result = CliRunner().invoke(_cli(), ["profile", "torchvision:resnet18", "--input-shape", "1,3,32,32",
                                         "--runs", "3", "--warmup", "1", "--json", "--no-memory"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    p = Profile.from_dict(data)
    assert p.name == "torchvision:resnet18" and p.input_shapes == [[1, 3, 32, 32]]
    assert p.params.total == sum(t.numel() for t in torchvision.models.resnet18().parameters())
    assert p.latency_onnx.runs == 3 and p.latency_onnx.threads == 2 and p.memory is None


def test_profile_table_without_latency():
    result = CliRunner().invoke(_cli(), ["profile", "torch.nn:Identity", "--input-shape", "2x4",
                                         "--no-latency", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "MACs" in result.output and "ORT latency" not in result.output


def test_unknown_model_and_bad_shape_are_usage_errors():
    result = CliRunner().invoke(_cli(), ["profile", "torchvision:nope", "--no-latency"])
    assert result.exit_code == 2 and "torchvision has no model 'nope'" in result.output
    result = CliRunner().invoke(_cli(), ["profile", "torchvision:resnet18", "--input-shape", "1,a"])
    assert result.exit_code == 2 and "not a shape" in result.output


def test_profile_takes_a_built_in_task_model_as_its_help_says():
    from edgeprune.tasks import get_task, pretrained

    result = CliRunner().invoke(_cli(), ["profile", "digits", "--no-latency", "--no-memory", "--json"])
    assert result.exit_code == 0, result.output
    p = Profile.from_dict(json.loads(result.output))
    assert p.input_shapes == [[1, *get_task("digits").input_shape]]
    assert p.params.total == sum(t.numel() for t in pretrained("digits").parameters())
