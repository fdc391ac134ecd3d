"""Trained weights for the built-in tasks: shipped in the package, or trained once and cached on disk.

A weights file is ``<task>-v<version>-seed<seed>.safetensors``; its metadata holds the task, version,
seed and the validation accuracy measured right after training. The package ships seed 0 of the
tasks that take more than a few seconds to train (``edgeprune/tasks/weights/``, made by
``scripts/train_task_weights.py`` with this module's recipe), so a fresh install neither trains nor
waits; any other seed, or a task whose version moved past the shipped file, is trained on first use
and cached in :func:`cache_dir`. A file is written to a temporary name and renamed, so an
interrupted run never leaves half a file behind.
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


PACKAGED_DIR = Path(__file__).with_name("weights")


def packaged_path(name: str, seed: int = 0) -> Path:
    """Where the package would ship the weights of task ``name`` with ``seed`` (it may not)."""
    return PACKAGED_DIR / cache_path(name, seed).name


def _weights_file(name: str, seed: int) -> Path | None:
    """The cached file, else the shipped one, else ``None``."""
    for path in (cache_path(name, seed), packaged_path(name, seed)):
        if path.exists():
            return path
    return None


def cache_path(name: str, seed: int = 0) -> Path:
    """Where :func:`pretrained` keeps the weights of task ``name`` trained with ``seed``."""
    task = get_task(name)
    return cache_dir() / f"{task.name}-v{task.version}-seed{seed}.safetensors"


def cache_entry(name: str, seed: int = 0) -> CacheEntry | None:
    """The metadata of the cached (or shipped) weights, or ``None`` when there are none yet."""
    path = _weights_file(name, seed)
    if path is None:
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return CacheEntry(path=path, task=meta.get("task", name), version=meta.get("version", ""),
                      seed=int(meta.get("seed", seed)), val_accuracy=float(meta.get("val_accuracy", "nan")),
                      train_seconds=float(meta.get("train_seconds", "nan")))


def pretrained(name: str, seed: int = 0, *, retrain: bool = False, allow_train: bool = True) -> nn.Module:
    """The model of task ``name`` trained from scratch with ``seed``, in eval mode.

    Loads the cached or shipped weights (well under a second); where there are none, trains the
    model with the task's recipe (seconds to minutes on two cores) and caches the state dict.

    Args:
        name: a task name (see :func:`edgeprune.tasks.list_tasks`).
        seed: seeds initialisation and the shuffle order; different seeds give different weights.
        retrain: train again even if a cached or shipped file exists (the cached file is overwritten,
            the shipped one never).
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
    found = _weights_file(name, seed)
    if found is not None and not retrain:
        model.load_state_dict(load_file(str(found)))
        return model.eval()
    path = cache_path(name, seed)
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
