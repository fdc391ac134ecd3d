"""Model specs: one string names a model, and the model knows the spec that built it.

A spec is one of::

    torchvision:resnet18          a torchvision classification/detection model, random weights
    timm:vit_tiny_patch16_224     a timm model, random weights (``pretrained=False``: no network)
    package.module:factory        an importable callable that returns an ``nn.Module``
    path/to/file.py:factory       a callable in a Python file
    mnist-cnn                     a built-in model registered with :func:`register_builtin`
    mnist                         a built-in task's model (``edgeprune.tasks``), trained and cached

Example inputs travel through edgeprune as a tensor, a tuple of positional tensors or a dict of
keyword tensors; :func:`split_inputs` turns any of them into ``(args, kwargs)``.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_map
from edgeprune.errors import EdgepruneError

ExampleInputs = Union[torch.Tensor, tuple, list, Mapping[str, torch.Tensor]]

DEFAULT_IMAGE_SHAPE: tuple[int, ...] = (1, 3, 224, 224)
_SPEC_ATTR = "_edgeprune_spec"
_SHAPE_ATTR = "_edgeprune_input_shape"


class SpecError(EdgepruneError, ValueError):
    """A model spec names no model edgeprune can build (unknown prefix, name or factory)."""


@dataclass(frozen=True)
class Builtin:
    """A built-in model: a factory taking no arguments and the input shape it expects."""

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype = torch.float32


_BUILTINS: dict[str, Builtin] = {}


def register_builtin(name: str, factory: Callable[[], nn.Module], input_shape: Sequence[int],
                     input_dtype: torch.dtype = torch.float32) -> None:
    """Register a built-in model under a short name (used by ``edgeprune.tasks``).

    Args:
        name: the spec that names it, e.g. ``"mnist-cnn"``; must not contain ``":"``.
        factory: a callable with no arguments returning a fresh ``nn.Module``.
        input_shape: the shape of one example input, batch first, e.g. ``(1, 1, 28, 28)``.
        input_dtype: dtype of the example input (``torch.long`` for token ids).

    Example:
        >>> register_builtin("tiny-mlp", lambda: nn.Sequential(nn.Linear(4, 2)), (1, 4))
        >>> load_model("tiny-mlp")(torch.zeros(1, 4)).shape
        torch.Size([1, 2])
    """
    if ":" in name:
        raise SpecError(f"built-in name {name!r} must not contain ':' (that marks a prefix or factory)")
    _BUILTINS[name] = Builtin(name, factory, tuple(int(d) for d in input_shape), input_dtype)


def builtin_names() -> list[str]:
    """The names registered with :func:`register_builtin`, sorted."""
    return sorted(_BUILTINS)


def load_model(spec: str, *, seed: int = 0, trained: bool = True) -> nn.Module:
    """Build the model a spec names, in eval mode, and record the spec on it.

    This is the one place that turns a model spec into a model: the CLI's commands, saved-model
    reloading and Python callers all come here.

    Args:
        spec: ``torchvision:NAME``, ``timm:NAME``, ``package.module:factory``,
            ``path/to/file.py:factory``, a name registered with :func:`register_builtin`, or a
            built-in task name (``mnist``, ``mnist-vit``, ``mnist1d``, ``digits``; see
            ``edgeprune.tasks``), which gives the task's model.
        seed: for a task name, which trained weights (see ``edgeprune.tasks.pretrained``).
        trained: for a task name, its trained weights (trained once on first use, then loaded
            from the cache, as the CLI does); ``False`` gives the untrained architecture.

    Returns:
        A fresh ``nn.Module`` in eval mode. ``spec_of(model)`` returns ``spec``; a task model also
        records its example input shape for :func:`default_input`.

    Raises:
        SpecError: the prefix, name, module, file or factory does not exist, or the factory does
            not return an ``nn.Module``.

    Example:
        >>> m = load_model("torchvision:resnet18")
        >>> spec_of(m)
        'torchvision:resnet18'
        >>> default_input(load_model("digits", trained=False)).shape
        torch.Size([1, 64])
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"a model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    input_shape = None
    if spec in _BUILTINS:
        model = _BUILTINS[spec].factory()
    elif ":" not in spec and spec in _task_names():
        model, input_shape = _task_model(spec, seed, trained)
    elif ":" not in spec:
        known = ", ".join([*_task_names(), *builtin_names()])
        raise SpecError(f"unknown model {spec!r}: use torchvision:NAME, timm:NAME, package.module:factory, "
                        f"path/to/file.py:factory or a built-in name ({known})")
    else:
        prefix, _, name = spec.rpartition(":")
        if not prefix or not name:
            raise SpecError(f"malformed model spec {spec!r}: expected PREFIX:NAME")
        if prefix == "torchvision":
            model = _torchvision(name)
        elif prefix == "timm":
            model = _timm(name)
        else:
            model = resolve_callable(spec)()
    if not isinstance(model, nn.Module):
        raise SpecError(f"{spec!r} built a {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    object.__setattr__(model, _SPEC_ATTR, spec)
    if input_shape is not None:
        object.__setattr__(model, _SHAPE_ATTR, input_shape)
    return model


def _task_names() -> list[str]:
    from edgeprune.tasks import list_tasks  # the tasks package stays out of ``import edgeprune``

    return list_tasks()


def _task_model(name: str, seed: int, trained: bool) -> tuple[nn.Module, tuple[int, ...]]:
    """A built-in task's model (trained, from the cache once trained) and its example input shape."""
    from edgeprune.tasks import get_task, pretrained

    task = get_task(name)
    model = pretrained(name, seed) if trained else task.build(seed)
    return model, (1, *task.input_shape)


def spec_of(model: nn.Module) -> str | None:
    """The spec :func:`load_model` built ``model`` from.

    Args:
        model: any model (copies made with ``copy.deepcopy`` keep the spec).

    Returns:
        The spec string, or ``None`` for a model built otherwise.
    """
    return getattr(model, _SPEC_ATTR, None)


def default_input(spec_or_model: str | nn.Module, input_shape: Sequence[int] | None = None,
                  *, seed: int = 0) -> torch.Tensor:
    """A fixed-seed example input for a model.

    The shape comes from, in order: ``input_shape``; a built-in's registered shape; a timm
    model's ``pretrained_cfg["input_size"]``; ``(1, 3, 224, 224)`` for other image models.

    Args:
        spec_or_model: a spec string or a model (a spec is looked up without building the model
            where possible).
        input_shape: the full shape to use, batch first; overrides everything else.
        seed: seed of the random generator, so the same call gives the same tensor.

    Returns:
        A tensor of the chosen shape (normal values; random ids below 100 for an integer input).

    Example:
        >>> default_input("torchvision:resnet18", (1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """
    dtype = torch.float32
    shape: tuple[int, ...] | None = tuple(int(d) for d in input_shape) if input_shape is not None else None
    spec = spec_or_model if isinstance(spec_or_model, str) else spec_of(spec_or_model)
    if spec is not None and spec in _BUILTINS:
        dtype = _BUILTINS[spec].input_dtype
        shape = shape or _BUILTINS[spec].input_shape
    if shape is None and isinstance(spec_or_model, nn.Module):
        shape = _model_input_shape(spec_or_model)
    if shape is None and isinstance(spec, str) and spec.startswith("timm:"):
        shape = _timm_input_shape(spec.split(":", 1)[1])
    shape = shape or DEFAULT_IMAGE_SHAPE
    if any(d <= 0 for d in shape):
        raise SpecError(f"input shape {shape} has a dimension <= 0")
    check_input_size(shape)
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=dtype)
    return torch.randint(0, 100, shape, generator=gen, dtype=dtype)


MAX_INPUT_ELEMENTS = 2 ** 31  # 8 GiB of float32: no edge model's example input comes near it


def check_input_size(shape: Sequence[int]) -> None:
    """Refuse an input shape too large to allocate (a corrupt or hostile file's, not a real model's).

    Raises:
        SpecError: the shape holds more than ``MAX_INPUT_ELEMENTS`` elements.
    """
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_INPUT_ELEMENTS:
        raise SpecError(f"input shape {tuple(shape)} has {n:.3g} elements, more than {MAX_INPUT_ELEMENTS:.3g}: "
                        "not an edge model's input")


def split_inputs(example_inputs: ExampleInputs) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Normalise example inputs to ``(args, kwargs)`` for ``model(*args, **kwargs)``.

    Args:
        example_inputs: a tensor, a tuple/list of positional inputs (tensors, or containers of
            tensors such as a detection model's list of images), or a dict of name -> tensor.

    Returns:
        ``(args, kwargs)``; exactly one of them is non-empty.

    Raises:
        TypeError: anything else, or a container holding no tensor.
    """
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        kwargs = dict(example_inputs)
        bad = [k for k, v in kwargs.items() if not isinstance(v, torch.Tensor)]
        if bad or not kwargs:
            raise TypeError(f"example inputs dict must map names to tensors (bad keys: {bad})")
        return (), kwargs
    if isinstance(example_inputs, (tuple, list)):
        args = tuple(example_inputs)
        leaves, _ = tree_flatten(args)
        if not any(isinstance(a, torch.Tensor) for a in leaves):
            raise TypeError("example inputs tuple must hold one or more tensors")
        return args, {}
    raise TypeError(f"example inputs must be a tensor, tuple or dict of tensors, not {type(example_inputs).__name__}")


def flat_inputs(example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """The input tensors in call order.

    Args:
        example_inputs: a tensor, tuple or dict of tensors.

    Returns:
        Positional tensors, then keyword tensors in dict order.
    """
    args, kwargs = split_inputs(example_inputs)
    leaves, _ = tree_flatten(args)
    return [t for t in leaves if isinstance(t, torch.Tensor)] + list(kwargs.values())


def random_inputs(example_inputs: ExampleInputs, *, seed: int = 0, batch_size: int | None = None
                  ) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Seeded random inputs shaped like ``example_inputs``, as ``(args, kwargs)``.

    Float tensors get normal values with the example's mean and standard deviation (so an image
    in [0, 1] stays in that range roughly); integer tensors get values between the example's min
    and max; boolean tensors (masks) are copied, since a random mask can mask every position.

    Args:
        example_inputs: a tensor, tuple or dict of tensors.
        seed: the generator seed: the same seed gives the same tensors.
        batch_size: replace dimension 0 of every input by this size (``None`` keeps it).

    Returns:
        ``(args, kwargs)`` for ``model(*args, **kwargs)``.
    """
    args, kwargs = split_inputs(example_inputs)
    gen = torch.Generator().manual_seed(seed)

    def fresh(t: torch.Tensor) -> torch.Tensor:
        shape = tuple(t.shape) if batch_size is None or t.dim() == 0 else (batch_size, *t.shape[1:])
        if t.dtype.is_floating_point:
            ref = t.detach().double()
            mean = float(ref.mean()) if t.numel() else 0.0
            std = float(ref.std()) if t.numel() > 1 else 1.0
            std = std if std == std and 0 < std < float("inf") else 1.0
            return (torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean).to(t.dtype)
        if t.dtype == torch.bool or t.numel() == 0:
            return t.clone() if shape == tuple(t.shape) else t[:1].expand(shape).clone()
        lo, hi = int(t.min()), int(t.max())
        return torch.randint(lo, hi + 1, shape, generator=gen, dtype=t.dtype)

    return tree_map(lambda a: fresh(a) if isinstance(a, torch.Tensor) else a, args), {k: fresh(v) for k, v in kwargs.items()}


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block, then restore every module's own flag.

    Args:
        model: the model.

    Returns:
        A context manager yielding ``model``.
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def _model_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    recorded = getattr(model, _SHAPE_ATTR, None)
    if recorded is not None:
        return tuple(recorded)
    cfg = getattr(model, "pretrained_cfg", None)  # timm models carry their input size
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return (1, *(int(d) for d in cfg["input_size"]))
    return None


def _timm_input_shape(name: str) -> tuple[int, ...] | None:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is an optional dependency
        return None
    cfg = timm.get_pretrained_cfg(name) if timm.is_model(name) else None
    return (1, *cfg.input_size) if cfg is not None and cfg.input_size else None


def _torchvision(name: str) -> nn.Module:
    try:
        import torchvision.models as tvm
    except ImportError as exc:  # pragma: no cover - torchvision is an optional dependency
        raise SpecError("torchvision is not installed (pip install 'edgeprune[tasks]')") from exc
    try:
        builder = tvm.get_model_builder(name)
    except ValueError as exc:
        raise SpecError(f"torchvision has no model {name!r}") from exc
    return builder(weights=None)


def _timm(name: str) -> nn.Module:
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is an optional dependency
        raise SpecError("timm is not installed (pip install 'edgeprune[tasks]')") from exc
    if not timm.is_model(name):
        raise SpecError(f"timm has no model {name!r}")
    return timm.create_model(name, pretrained=False)


def _module_from_import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SpecError(f"cannot import module {module_name!r}: {exc}") from exc


def _module_from_file(path_text: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise SpecError(f"file {path_text!r} does not exist")
    mod_name = f"_edgeprune_spec_{abs(hash(str(path)))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"cannot load {path_text!r} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise SpecError(f"running {path_text!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def resolve_callable(spec: str) -> Callable[..., Any]:
    """The callable that ``package.module:attr`` or ``path/to/file.py:attr`` names.

    Raises:
        SpecError: the module cannot be imported, the file does not exist or fails to run, the
            attribute is missing, or it is not callable.
    """
    prefix, sep, name = spec.strip().rpartition(":")
    if not sep or not prefix or not name:
        raise SpecError(f"{spec!r} is not package.module:attr or path/to/file.py:attr")
    module = _module_from_file(prefix) if prefix.endswith(".py") else _module_from_import(prefix)
    target = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise SpecError(f"{spec!r}: {getattr(module, '__name__', module)!r} has no attribute {name!r}")
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(f"{spec!r}: {name!r} is not callable")
    return target
