"""What a run starts from: the model, its example input, the data and the evaluation function.

Each comes from a spec string:

* model: a built-in task name (``mnist``, ``mnist1d``, ``digits``: its pretrained model) or any
  spec :func:`edgeprune.specs.load_model` takes (``torchvision:NAME``, ``timm:NAME``,
  ``package.module:factory``, ``path/to/file.py:factory``);
* data: a built-in task name (its train/val loaders), an image folder (``train/`` and ``val/``
  subfolders, or one folder of class subfolders split by ``val_fraction``), or
  ``package.module:function`` / ``file.py:function`` returning ``(train_loader, val_loader)``,
  a dict with ``train`` and ``val``, or one validation loader;
* evaluate: ``package.module:function`` / ``file.py:function`` called as ``f(model, val_loader)``
  and returning a score in percent (higher is better); top-1 accuracy by default.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeprune.run.errors import BadInputError

EvaluateFn = Callable[[nn.Module], float]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class RunInputs:
    """A run's model, example input and (optional) data.

    Attributes:
        model: the trained model, in eval mode.
        example: one example input (batch 1) with the shape the model is measured at.
        train: the fine-tuning loader, or ``None``.
        val: the validation loader, or ``None``.
        evaluate: ``evaluate(model) -> percent`` on ``val``, or ``None`` without data.
        metric: the name of what ``evaluate`` returns (``"top-1 accuracy"`` by default).
    """

    model: nn.Module
    example: torch.Tensor
    train: Iterable | None = None
    val: Iterable | None = None
    evaluate: EvaluateFn | None = None
    metric: str = "top-1 accuracy"
    loss_fn: Callable[..., Any] | None = None  # a built-in task's fine-tuning loss (None: cross-entropy)
    figures: Callable[[nn.Module], dict[str, float]] | None = None  # a built-in task's extra figures on val


def task_names() -> list[str]:
    """The built-in task names (``mnist``, ``mnist1d``, ``digits``, and any registered since)."""
    from edgeprune.tasks import list_tasks

    return list_tasks()


def build_model(spec: str, seed: int = 0, *, trained: bool = True) -> nn.Module:
    """The model a spec names; a built-in task name gives its pretrained model.

    Args:
        spec: a task name or a :func:`edgeprune.specs.load_model` spec.
        seed: which pretrained weights of a built-in task (trained once, then cached).
        trained: for a task name, ``False`` gives the untrained architecture (to reload a save into).

    Raises:
        BadInputError: the spec names nothing edgeprune can build.
    """
    from edgeprune.specs import SpecError, load_model

    try:
        return load_model(spec, seed=seed, trained=trained)
    except SpecError as exc:
        raise BadInputError(f"MODEL {spec!r}: {exc}") from None


def resolve_inputs(model_spec: str, data_spec: str | None = None, evaluate_spec: str | None = None, *,
                   seed: int = 0, batch_size: int | None = None, input_shape: tuple[int, ...] | None = None,
                   val_fraction: float = 0.1) -> RunInputs:
    """Build the model, data and evaluation function of a run from their specs.

    Args:
        model_spec: see the module docstring.
        data_spec: see the module docstring; ``None`` for no data.
        evaluate_spec: see the module docstring; ``None`` for top-1 accuracy.
        seed: pretrained weights of a built-in model, and the shuffle order of its data.
        batch_size: of loaders edgeprune builds (built-in tasks, image folders).
        input_shape: example input shape, batch first; used when there is no data to take it from.
        val_fraction: share of a flat image folder held out for validation.

    Returns:
        The :class:`RunInputs`.

    Raises:
        BadInputError: a spec is wrong, or the data yields nothing; the message names which.
    """
    model = build_model(model_spec, seed)
    train, val = load_data(data_spec, seed=seed, batch_size=batch_size, model=model,
                           input_shape=input_shape, val_fraction=val_fraction) if data_spec else (None, None)
    example = _example_input(model, model_spec, val, input_shape)
    evaluate = None
    task = _task(data_spec)
    metric = "score" if evaluate_spec else task.metric if task is not None else "top-1 accuracy"
    if val is not None:
        score = load_callable(evaluate_spec, "--evaluate") if evaluate_spec else task.score if task else None
        evaluate = bind_evaluate(score, val)
    elif evaluate_spec:
        raise BadInputError("--evaluate needs --data (its validation split is what gets evaluated)")
    figures = None
    if task is not None and task.figures is not None and val is not None:
        figures = lambda m: task.figures(m, val)  # noqa: E731
    return RunInputs(model, example, train, val, evaluate, metric=metric,
                     loss_fn=task.loss_fn if task is not None else None, figures=figures)


def _task(data_spec: str | None):
    """The built-in task a data spec names, or None."""
    if data_spec is None or data_spec not in task_names():
        return None
    from edgeprune.tasks import get_task

    return get_task(data_spec)


def load_data(spec: str, *, seed: int = 0, batch_size: int | None = None, model: nn.Module | None = None,
              input_shape: tuple[int, ...] | None = None, val_fraction: float = 0.1
              ) -> tuple[Iterable | None, Iterable]:
    """``(train_loader or None, val_loader)`` from a data spec (see the module docstring).

    Raises:
        BadInputError: the spec is not a task, folder or callable, or returns something else.
    """
    if spec in task_names():
        from edgeprune.tasks import get_task

        return get_task(spec).loaders(batch_size, seed=seed)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _image_folder(path, model, input_shape, batch_size or 32, val_fraction, seed)
    if ":" in spec and not spec.endswith(":"):
        made = load_callable(spec, "DATA")()
        return _as_loaders(made, spec)
    raise BadInputError(f"DATA {spec!r} is neither a built-in task ({', '.join(task_names())}), an existing "
                        "image folder, nor package.module:function / file.py:function")


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The callable ``spec`` names: ``package.module:attr`` or ``path/to/file.py:attr``.

    Raises:
        BadInputError: naming ``what`` (the flag) and the missing module, file or attribute.
    """
    from edgeprune.specs import SpecError, resolve_callable

    try:
        return resolve_callable(spec)
    except SpecError as exc:
        raise BadInputError(f"{what} {spec!r}: {exc}") from None


def _as_loaders(made: Any, spec: str) -> tuple[Iterable | None, Iterable]:
    if isinstance(made, Mapping):
        if "val" not in made:
            raise BadInputError(f"DATA {spec!r} returned a dict without a 'val' loader (keys: {sorted(made)})")
        return made.get("train"), made["val"]
    if isinstance(made, (tuple, list)):
        if len(made) != 2:
            raise BadInputError(f"DATA {spec!r} returned {len(made)} items; expected (train_loader, val_loader)")
        return made[0], made[1]
    if isinstance(made, Iterable) and not isinstance(made, (nn.Module, str, bytes, torch.Tensor)):
        return None, made
    raise BadInputError(f"DATA {spec!r} returned a {type(made).__name__}; expected (train_loader, val_loader), "
                        "{'train': ..., 'val': ...} or one validation loader")


def _image_folder(root: Path, model: nn.Module | None, input_shape: tuple[int, ...] | None, batch_size: int,
                  val_fraction: float, seed: int) -> tuple[Iterable, Iterable]:
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    from edgeprune.specs import default_input

    shape = tuple(input_shape) if input_shape else tuple(default_input(model).shape) if model is not None \
        else (1, 3, 224, 224)
    if len(shape) != 4:
        raise BadInputError(f"DATA {str(root)!r}: an image folder needs an image model input (N, C, H, W), got {shape}")
    channels, size = shape[1], shape[2:]
    steps: list[Any] = [transforms.Resize(size)]
    if channels == 1:
        steps.append(transforms.Grayscale(1))
    steps += [transforms.ToTensor(),
              transforms.Normalize(IMAGENET_MEAN[:channels] if channels == 3 else (0.5,) * channels,
                                   IMAGENET_STD[:channels] if channels == 3 else (0.5,) * channels)]
    tf = transforms.Compose(steps)
    try:
        split = {name: root / name for name in ("train", "val") if (root / name).is_dir()}
        if len(split) == 2:
            train_set, val_set = datasets.ImageFolder(split["train"], tf), datasets.ImageFolder(split["val"], tf)
        else:
            full = datasets.ImageFolder(root, tf)
            n_val = max(1, round(len(full) * val_fraction))
            if len(full) - n_val < 1:
                raise BadInputError(f"DATA {str(root)!r} holds {len(full)} images: too few to split for validation")
            train_set, val_set = random_split(full, [len(full) - n_val, n_val],
                                              generator=torch.Generator().manual_seed(seed))
    except (FileNotFoundError, RuntimeError) as exc:
        raise BadInputError(f"DATA {str(root)!r} is not an image folder (class subfolders of images): {exc}") from None
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator),
            DataLoader(val_set, batch_size=batch_size))


def _example_input(model: nn.Module, spec: str, val: Iterable | None,
                   input_shape: tuple[int, ...] | None) -> torch.Tensor:
    from edgeprune.specs import SpecError, default_input

    if val is not None:
        batch = next(iter(val), None)
        if batch is None:
            raise BadInputError("the validation loader is empty")
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(inputs, torch.Tensor):
            raise BadInputError(f"validation batches must be (inputs, targets) with tensor inputs, "
                                f"got {type(inputs).__name__}")
        return inputs[:1].clone()
    if spec in task_names() and input_shape is None:
        from edgeprune.tasks import get_task

        return get_task(spec).example_input()
    try:
        return default_input(model, input_shape)
    except SpecError as exc:
        raise BadInputError(f"--input-shape: {exc}") from None


def bind_evaluate(score: Callable[..., Any] | None, val: Iterable) -> EvaluateFn:
    """``evaluate(model) -> percent`` on ``val``: ``score(model, val)``, or top-1 accuracy when ``score`` is ``None``."""
    from edgeprune.tasks import evaluate as top1

    def evaluate(model: nn.Module) -> float:
        value = score(model, val) if score is not None else top1(model, val)
        return float(value)

    return evaluate
