"""Trained weights for the built-in tasks, trained once and cached on disk.

A cached file is ``<cache dir>/<task>-v<version>-seed<seed>.safetensors``; its metadata holds the
task, version, seed and the validation accuracy measured right after training. A file is written
to a temporary name and renamed, so an interrupted run never leaves half a file behind.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ._registry import get_task


@dataclass(frozen=True)
class CacheEntry:
    """Metadata of one cached set of weights."""

    path: Path
    task: str
    version: str
    seed: int
    val_accuracy: float
    train_seconds: float


def cache_dir() -> Path:
    """``$EDGEPRUNE_CACHE`` if set, else ``~/.cache/edgeprune``."""
    env = os.environ.get("EDGEPRUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgeprune"


def cache_path(name: str, seed: int = 0) -> Path:
    """Where :func:`pretrained` keeps the weights of task ``name`` trained with ``seed``."""
    task = get_task(name)
    return cache_dir() / f"{task.name}-v{task.version}-seed{seed}.safetensors"


def cache_entry(name: str, seed: int = 0) -> CacheEntry | None:
    """The metadata of the cached weights, or ``None`` when nothing is cached yet."""
    path = cache_path(name, seed)
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return CacheEntry(path=path, task=meta.get("task", name), version=meta.get("version", ""),
                      seed=int(meta.get("seed", seed)), val_accuracy=float(meta.get("val_accuracy", "nan")),
                      train_seconds=float(meta.get("train_seconds", "nan")))


def pretrained(name: str, seed: int = 0, *, retrain: bool = False, allow_train: bool = True) -> nn.Module:
    """The model of task ``name`` trained from scratch with ``seed``, in eval mode.

    The first call trains it with the task's recipe (under a minute on two cores) and caches the
    state dict; later calls load it (well under a second).

    Args:
        name: a task name (see :func:`edgeprune.tasks.list_tasks`).
        seed: seeds initialisation and the shuffle order; different seeds give different weights.
        retrain: train again even if a cached file exists (and overwrite it).
        allow_train: when False, raise instead of training (to assert that the cache is used).

    Raises:
        FileNotFoundError: if ``allow_train`` is False and nothing is cached.

    Example:
        >>> from edgeprune.tasks import get_task, pretrained
        >>> model = pretrained("digits")
        >>> get_task("digits").evaluate(model) > 90
        True
    """
    task = get_task(name)
    if task.trained_model is not None:  # it ships trained (the minilm encoder): nothing to train or cache
        return task.trained_model().eval()
    model = task.build(seed=seed)
    path = cache_path(name, seed)
    if path.exists() and not retrain:
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    if not allow_train:
        raise FileNotFoundError(f"no cached weights for task {name!r} seed {seed} at {path}")
    log = task.train(model, seed=seed)
    accuracy = task.evaluate(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"task": task.name, "version": task.version, "seed": str(seed),
                "val_accuracy": f"{accuracy:.4f}", "train_seconds": f"{log.seconds:.2f}"}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        # contiguous clones: safetensors refuses tensors that share storage
        save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, tmp, metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model.eval()
