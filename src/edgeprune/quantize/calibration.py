"""Calibration data: a named number of batches drawn from the user's data, reproducible with a seed.

Static INT8 quantization fixes every activation's range from what the model sees on calibration
data, so that data must be real (calibrate on the data the model will meet, never on noise) and
the same seed must give the same batches, hence the same scales and the same file.

Drawing: when the loader has a map-style dataset (``len`` and indexing, like every
``torch.utils.data.DataLoader`` over a ``TensorDataset``, ``ImageFolder`` or ``Subset``), the
samples are drawn without replacement by a ``torch.Generator`` seeded with ``seed`` and grouped
into batches of ``batch_size``; the loader's own shuffling (and its generator's state) plays no
part. Any other iterable of batches is read from its start: the first ``num_batches`` batches,
as the iterable yields them (reproducible when the iterable is).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edgeprune.quantize.errors import CalibrationDataError


@dataclass(frozen=True)
class Calibration:
    """How many batches to calibrate on, and which.

    Attributes:
        num_batches: batches the quantizer sees (8 x 32 samples by default).
        batch_size: samples per batch when drawing from a map-style dataset.
        seed: which samples are drawn.
    """

    num_batches: int = 8
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_batches < 1 or self.batch_size < 1:
            raise CalibrationDataError(f"calibration needs num_batches >= 1 and batch_size >= 1, got "
                                       f"{self.num_batches} and {self.batch_size}")


def calibration_batches(data: Iterable, config: Calibration = Calibration()) -> list[np.ndarray]:
    """Draw the calibration batches from a loader.

    Args:
        data: a ``DataLoader`` (or any iterable of ``inputs`` or ``(inputs, targets)`` batches).
        config: how many batches, of what size, with which seed (see the module docstring).

    Returns:
        ``config.num_batches`` float32 arrays of shape ``(batch, *sample_shape)`` (fewer only
        when a plain iterable runs out; an empty one is an error).

    Raises:
        CalibrationDataError: the data yields nothing, or its inputs are not tensors.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> loader = DataLoader(TensorDataset(torch.randn(100, 4), torch.zeros(100)), batch_size=10)
        >>> [b.shape for b in calibration_batches(loader, Calibration(num_batches=2, batch_size=8))]
        [(8, 4), (8, 4)]
    """
    dataset = getattr(data, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        return _draw(dataset, config)
    batches = []
    for batch in data:
        batches.append(_inputs_of(batch, f"batch {len(batches)}"))
        if len(batches) == config.num_batches:
            break
    if not batches:
        raise CalibrationDataError("the calibration data yields no batches")
    return batches


def check_batches(batches: Sequence[np.ndarray], input_name: str, input_shape: Sequence[int | str | None]) -> None:
    """Refuse calibration batches that do not fit the model's input.

    Args:
        batches: the calibration arrays.
        input_name: the model input they feed (named in the error).
        input_shape: its shape in the model file; a string or ``None`` is a free dimension.

    Raises:
        CalibrationDataError: naming the input, the batch and both shapes.
    """
    want = ["batch" if i == 0 and not isinstance(d, int) else d if isinstance(d, int) else "?"
            for i, d in enumerate(input_shape)]
    for i, batch in enumerate(batches):
        if batch.dtype != np.float32:
            raise CalibrationDataError(f"calibration batch {i} for input {input_name!r} is {batch.dtype}, "
                                       "the model takes float32")
        fits = batch.ndim == len(input_shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(input_shape, batch.shape))
        if not fits:
            raise CalibrationDataError(f"calibration batch {i} has shape {tuple(batch.shape)}, but the model's "
                                       f"input {input_name!r} takes ({', '.join(map(str, want))})")


def _draw(dataset, config: Calibration) -> list[np.ndarray]:
    n = len(dataset)
    if n == 0:
        raise CalibrationDataError("the calibration dataset is empty")
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(n, generator=generator).tolist()
    size = min(config.batch_size, n)
    batches = []
    for b in range(config.num_batches):
        idx = order[b * size:(b + 1) * size]
        if len(idx) < size:  # the dataset holds fewer than num_batches * batch_size samples
            break
        samples = [_inputs_of(dataset[i], f"sample {i}", sample=True) for i in idx]
        batches.append(np.stack(samples))
    return batches


def _inputs_of(item, where: str, sample: bool = False) -> np.ndarray:
    inputs = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, torch.Tensor):
        raise CalibrationDataError(f"calibration {where}: expected a tensor or (inputs, targets), "
                                   f"got {type(inputs).__name__}")
    array = inputs.detach().cpu().contiguous().numpy()
    return array.astype(np.float32) if array.dtype == np.float64 else array
