"""Bytes: the state dict in memory, the dense ONNX file, that file compressed, and a sparse ONNX file.

The zip figure is what the dense file costs to ship (DEFLATE, level 9): zeros from sparsity and
pruning compress away, so it shows what a masked model saves in transfer without claiming it
saves anything at run time.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

SparseExporter = Callable[[Path, Path], object]  # (dense ONNX path, sparse ONNX path to write)


@dataclass(frozen=True)
class SizeReport:
    """Sizes in bytes.

    Attributes:
        state_dict_bytes: tensors of ``model.state_dict()`` at their dtype (fp32: 4 bytes a value),
            tensors that share storage counted once.
        onnx_bytes: the dense ONNX file (one self-contained file).
        onnx_zip_bytes: that file in a DEFLATE (level 9) zip archive.
        sparse_onnx_bytes: the sparse ONNX file, when a sparse exporter was given; else ``None``.
    """

    state_dict_bytes: int
    onnx_bytes: int | None = None
    onnx_zip_bytes: int | None = None
    sparse_onnx_bytes: int | None = None


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the tensors in ``model.state_dict()``, shared storage counted once.

    Args:
        model: any module.

    Returns:
        The byte count (``numel * element_size`` summed).

    Example:
        >>> state_dict_bytes(nn.Linear(3, 2))  # 8 fp32 values
        32
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in model.state_dict(keep_vars=True).values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen and tensor.untyped_storage().data_ptr() != 0:
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    return total


def zip_bytes(path: str | os.PathLike) -> int:
    """Size of a file compressed alone in a zip archive.

    Args:
        path: the file.

    Returns:
        Bytes of the archive (DEFLATE, level 9, archive overhead included).
    """
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "file.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.write(path, arcname=Path(path).name)
        return archive.stat().st_size


def file_sizes(model: nn.Module, onnx_path: str | os.PathLike | None,
               sparse_exporter: SparseExporter | None = None) -> SizeReport:
    """All sizes of a model whose dense ONNX file is ``onnx_path``.

    Args:
        model: the model (for the state dict size).
        onnx_path: its dense ONNX file, or ``None`` to report only the state dict.
        sparse_exporter: ``f(dense_path, sparse_path)`` writing a sparse ONNX file, e.g.
            ``edgeprune.export.sparse_onnx.to_sparse_onnx``.

    Returns:
        A :class:`SizeReport`.
    """
    sd = state_dict_bytes(model)
    if onnx_path is None:
        return SizeReport(state_dict_bytes=sd)
    onnx_path = Path(onnx_path)
    sparse = None
    if sparse_exporter is not None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "sparse.onnx"
            sparse_exporter(onnx_path, out)
            sparse = out.stat().st_size
    return SizeReport(state_dict_bytes=sd, onnx_bytes=onnx_path.stat().st_size,
                      onnx_zip_bytes=zip_bytes(onnx_path), sparse_onnx_bytes=sparse)
