"""Reload the pruned model of a finished run (for ``edgeprune export`` and scripts)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from edgeprune.run.errors import BadInputError


def load_run_model(run_dir: str | Path) -> tuple[nn.Module, torch.Tensor]:
    """The pruned model saved in ``run_dir/model.edgeprune`` and an example input of the run's shape.

    The architecture is rebuilt from the run's model spec (a built-in task's untrained model,
    or the spec's factory), the saved plans are replayed and the weights loaded with strict checks.

    Raises:
        BadInputError: the run's files are missing or do not load.
    """
    from edgeprune.export.saving import LoadError, load
    from edgeprune.run.inputs import build_model
    from edgeprune.specs import default_input

    from edgeprune.specs import SpecError

    run_dir = Path(run_dir)
    try:
        recipe = json.loads((run_dir / "recipe.json").read_text(encoding="utf-8"))
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        spec, seed = recipe["model"], int(recipe.get("seed", 0))
        shape = [int(d) for d in metrics["profiles"]["after"]["input_shapes"][0]]
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise BadInputError(f"{run_dir}: cannot read the run's recipe.json/metrics.json "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(spec, str):
        raise BadInputError(f"{run_dir}: recipe.json's model is {spec!r}, not a model spec")
    base = build_model(spec, seed, trained=False)
    try:
        model = load(run_dir / "model.edgeprune", model=base)
    except LoadError as exc:
        raise BadInputError(f"{run_dir}: the saved model does not load: {exc}") from None
    try:
        return model, default_input(model, shape)
    except SpecError as exc:
        raise BadInputError(f"{run_dir}: metrics.json's input shape: {exc}") from None
