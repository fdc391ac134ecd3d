"""The registry of built-in tasks: name -> module that defines ``TASK`` (imported on first use)."""
from __future__ import annotations

import importlib

from ._task import Task

# Task modules import their data packages lazily, but stay out of `import edgeprune.tasks` anyway.
_MODULES: dict[str, str] = {
    "mnist": "edgeprune.tasks.mnist",
    "mnist1d": "edgeprune.tasks.mnist1d",
    "digits": "edgeprune.tasks.digits",
    "mnist-vit": "edgeprune.tasks.mnist_vit",
    "sensors": "edgeprune.tasks.sensors",
    "minilm": "edgeprune.tasks.minilm",
}
_EXTRA: dict[str, Task] = {}


def list_tasks() -> list[str]:
    """Names of all registered tasks."""
    return sorted({*_MODULES, *_EXTRA})


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        KeyError: with the list of known names, if ``name`` is not registered.

    Example:
        >>> from edgeprune.tasks import get_task
        >>> get_task("mnist").input_shape
        (1, 28, 28)
    """
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _MODULES:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")
    return importlib.import_module(_MODULES[name]).TASK


def register_task(task: Task, *, replace: bool = False) -> None:
    """Add a task to the registry (e.g. a user's own model and data for the CLI)."""
    if not replace and (task.name in _MODULES or task.name in _EXTRA):
        raise ValueError(f"task {task.name!r} is already registered (pass replace=True to override)")
    _EXTRA[task.name] = task
