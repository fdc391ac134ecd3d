"""Small helpers that turn numpy arrays into a fixed, seeded train/val split."""
from __future__ import annotations

import numpy as np
import torch

from ._task import Splits


def stratified_split(x: np.ndarray, y: np.ndarray, n_val: int, seed: int) -> Splits:
    """Split ``(x, y)`` so that the validation part holds ``n_val`` samples with the class
    proportions of the whole; the order within each part is shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    val_idx: list[np.ndarray] = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        take = int(round(n_val * len(idx) / len(y)))
        val_idx.append(rng.permutation(idx)[:take])
    val = np.concatenate(val_idx)
    # rounding per class may miss n_val by a few; fix it from the remaining samples
    rest = np.setdiff1d(np.arange(len(y)), val)
    if len(val) < n_val:
        extra = rng.choice(rest, n_val - len(val), replace=False)
        val, rest = np.concatenate([val, extra]), np.setdiff1d(rest, extra)
    elif len(val) > n_val:
        val, rest = val[:n_val], np.concatenate([rest, val[n_val:]])
    val, train = rng.permutation(val), rng.permutation(rest)
    return to_splits(x[train], y[train], x[val], y[val])


def to_splits(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Splits:
    """Wrap numpy arrays as float32 inputs and int64 targets."""
    return Splits(
        x_train=torch.as_tensor(x_train, dtype=torch.float32).contiguous(),
        y_train=torch.as_tensor(y_train, dtype=torch.int64).contiguous(),
        x_val=torch.as_tensor(x_val, dtype=torch.float32).contiguous(),
        y_val=torch.as_tensor(y_val, dtype=torch.int64).contiguous(),
    )
