"""ONNX files that are really smaller: sparse initializers in COO form with compact indices.

An initializer that is mostly zeros is stored as an ONNX ``sparse_initializer``: its non-zero
values plus their positions. The ONNX spec asks for INT64 indices (``onnx.checker`` rejects
anything else), but ONNX Runtime (checked with 1.32) loads INT8, INT16 and INT32 indices too, in
both layouts the spec allows: linearized ``[NNZ]`` and coordinates ``[NNZ, rank]``. (It rejects
unsigned types.) With ``index_dtype="compact"`` (the default) each tensor gets the smaller of

* linearized indices in the smallest signed type that holds ``numel - 1``
  (``nnz * {1, 2, 4, 8}`` bytes), and
* coordinates in the smallest signed type that holds the largest dimension
  (``nnz * rank * {1, 2, 4, 8}`` bytes);

``index_dtype="int64"`` gives linearized INT64 indices, a file ``onnx.checker`` accepts.

ONNX Runtime turns sparse initializers back into dense tensors when it loads the file: the gain is
the file (download, flash storage), not speed or memory at run time.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["to_sparse_onnx", "export_sparse_onnx", "onnx_size_report", "SparseConversion"]

_SIGNED = (np.int8, np.int16, np.int32, np.int64)
_FLOATS = (np.float16, np.float32, np.float64)
_MAX_PROTO = 2**31 - 1  # protobuf's limit on one serialized message


@dataclass
class SparseConversion:
    """What :func:`to_sparse_onnx` did: tensor name -> ``(index layout, index dtype, sparsity)``."""

    converted: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    kept_dense: list[str] = field(default_factory=list)


def _smallest_signed(max_value: int) -> type:
    for dt in _SIGNED:
        if max_value <= np.iinfo(dt).max:
            return dt
    raise ValueError(f"index {max_value} does not fit in int64")


def _encode(arr: np.ndarray, index_dtype: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(values [NNZ], indices, layout)`` of a dense array, indices in the chosen encoding."""
    flat = arr.reshape(-1)  # C order, as ONNX linearizes
    nz = np.flatnonzero(flat)
    values = flat[nz]
    if index_dtype == "int64" or arr.ndim <= 1:
        dt = np.int64 if index_dtype == "int64" else _smallest_signed(max(flat.size - 1, 0))
        return values, nz.astype(dt), "linear"
    lin_dt = _smallest_signed(flat.size - 1)
    coord_dt = _smallest_signed(max(arr.shape) - 1)
    lin_bytes = np.dtype(lin_dt).itemsize
    coord_bytes = np.dtype(coord_dt).itemsize * arr.ndim
    if coord_bytes < lin_bytes:
        coords = np.stack(np.unravel_index(nz, arr.shape), axis=1)  # (NNZ, rank), lexicographic
        return values, coords.astype(coord_dt), "coordinates"
    return values, nz.astype(lin_dt), "linear"


def _write_atomic(data: bytes, path: Path) -> None:
    # Write next to the target and rename: a reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_sparse_onnx(dense_onnx_path: str | os.PathLike, sparse_onnx_path: str | os.PathLike, *,
                   min_sparsity: float = 0.5, index_dtype: str = "compact") -> SparseConversion:
    """Rewrite the sparse initializers of an ONNX file as COO ``sparse_initializer`` entries.

    A floating-point initializer moves when at least ``min_sparsity`` of it is zero and its sparse
    form is smaller than its dense form. The output is one self-contained file, written atomically.

    Args:
        dense_onnx_path: the dense model (external data next to it is read too).
        sparse_onnx_path: where to write the sparse model.
        min_sparsity: the fraction of zeros an initializer needs to be converted.
        index_dtype: ``"compact"`` (smallest encoding ONNX Runtime loads) or ``"int64"`` (the
            spec's, accepted by ``onnx.checker``).

    Returns:
        A :class:`SparseConversion` naming what moved and how.

    Raises:
        ValueError: a bad option, or an output over protobuf's 2 GB limit.
        FileNotFoundError: ``dense_onnx_path`` does not exist.
    """
    import onnx
    from onnx import helper, numpy_helper

    if index_dtype not in ("compact", "int64"):
        raise ValueError(f"index_dtype must be 'compact' or 'int64', got {index_dtype!r}")
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity!r}")
    dense_onnx_path = Path(dense_onnx_path)
    if not dense_onnx_path.is_file():
        raise FileNotFoundError(f"no ONNX file at {dense_onnx_path}")
    model = onnx.load(str(dense_onnx_path))  # pulls external data in
    graph = model.graph
    report = SparseConversion()
    keep, sparse = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.type not in _FLOATS or arr.size == 0:
            keep.append(init)
            continue
        zeros = arr.size - int(np.count_nonzero(arr))
        sparsity = zeros / arr.size
        if sparsity < min_sparsity or zeros == arr.size:  # ORT needs at least one value
            keep.append(init)
            report.kept_dense.append(init.name)
            continue
        values, indices, layout = _encode(arr, index_dtype)
        if values.nbytes + indices.nbytes >= arr.nbytes:
            keep.append(init)
            report.kept_dense.append(init.name)
            continue
        sparse.append(helper.make_sparse_tensor(numpy_helper.from_array(values, init.name),
                                                numpy_helper.from_array(indices, f"{init.name}__indices"),
                                                list(arr.shape)))
        report.converted[init.name] = (layout, indices.dtype.name, round(sparsity, 6))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    graph.sparse_initializer.extend(sparse)
    if model.ByteSize() > _MAX_PROTO:
        raise ValueError(f"the sparse model is {model.ByteSize():,} bytes, over protobuf's 2 GB limit for one file")
    _write_atomic(model.SerializeToString(), Path(sparse_onnx_path))
    return report


def _file_bytes(path: Path) -> int:
    # The model file plus any external data files it references.
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    total = path.stat().st_size
    seen = set()
    for tensor in list(model.graph.initializer) + [s.values for s in model.graph.sparse_initializer]:
        if uses_external_data(tensor):
            location = next(e.value for e in tensor.external_data if e.key == "location")
            seen.add(location)
    return total + sum((path.parent / loc).stat().st_size for loc in seen)


def _zip_bytes(path: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.write(path, arcname=path.name)
    return buffer.getbuffer().nbytes


def onnx_size_report(dense_onnx_path: str | os.PathLike, sparse_onnx_path: str | os.PathLike) -> dict[str, Any]:
    """Bytes on disk of a dense ONNX model and its sparse form, raw and zip-compressed.

    Args:
        dense_onnx_path: the dense model (its external data files are counted).
        sparse_onnx_path: the sparse model from :func:`to_sparse_onnx`.

    Returns:
        ``{"dense_bytes", "sparse_bytes", "dense_zip_bytes", "sparse_zip_bytes", "ratio",
        "zip_ratio"}``; ratios are sparse / dense. Zip sizes are of the model file alone
        (deflate, level 9).
    """
    dense, sparse = Path(dense_onnx_path), Path(sparse_onnx_path)
    out = {"dense_bytes": _file_bytes(dense), "sparse_bytes": _file_bytes(sparse),
           "dense_zip_bytes": _zip_bytes(dense), "sparse_zip_bytes": _zip_bytes(sparse)}
    out["ratio"] = out["sparse_bytes"] / out["dense_bytes"]
    out["zip_ratio"] = out["sparse_zip_bytes"] / out["dense_zip_bytes"]
    return out


def _export_dense(model: Any, example_inputs: tuple, path: Path) -> None:
    try:
        from edgeprune.export.onnx import export_onnx  # the project's checked exporter, where present
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        export_onnx(model, example_inputs, path)
        return
    import torch

    torch.onnx.export(model, example_inputs, str(path), dynamo=True, external_data=False, verbose=False)


def _check_against(onnx_path: Path, model: Any, args: tuple, rtol: float) -> float:
    # The runtimes' one parity check (relative error: max |ort - torch| / max |torch|, per output) on
    # the example input and a seeded random one; returns the worst relative error.
    from edgeprune.runtimes import Tolerance, check_parity, open_session

    return check_parity(open_session("onnxruntime", onnx_path), model, tuple(args), tol=Tolerance(rtol)).max_rel


def export_sparse_onnx(model: Any, example_inputs: Any, path: str | os.PathLike, *,
                       min_sparsity: float = 0.5, index_dtype: str = "compact",
                       rtol: float = 1e-4) -> SparseConversion:
    """Export a (masked or finalized) model to an ONNX file with sparse initializers, checked.

    The model is not changed: a copy is finalized (masks baked in), exported dense to a temporary
    file (with ``edgeprune.export.onnx.export_onnx`` where it exists, else ``torch.onnx.export``),
    converted by :func:`to_sparse_onnx`, run in ONNX Runtime and compared with PyTorch; only a
    file that agrees is moved to ``path``.

    Args:
        model: the ``nn.Module``.
        example_inputs: one tensor or a tuple of positional tensor inputs.
        path: the sparse ONNX file to write.
        min_sparsity: as in :func:`to_sparse_onnx`.
        index_dtype: as in :func:`to_sparse_onnx`.
        rtol: allowed relative error, max |ORT - PyTorch| / max |PyTorch| per output.

    Returns:
        The :class:`SparseConversion`.

    Raises:
        ParityError: the sparse file disagrees with PyTorch beyond ``rtol`` (nothing is written).

    Example:
        >>> import torch, torch.nn as nn, tempfile, os
        >>> from edgeprune.weights import prune_weights, WeightPruneConfig
        >>> m = prune_weights(nn.Sequential(nn.Linear(64, 64)), config=WeightPruneConfig(
        ...     0.9, protect_first=False, protect_last=False)).model
        >>> out = os.path.join(tempfile.mkdtemp(), "m.onnx")
        >>> list(export_sparse_onnx(m, torch.randn(1, 64), out).converted)
        ['0.weight']
    """
    import torch

    from edgeprune.surgery.masks import finalize

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    plain = finalize(copy.deepcopy(model)).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".edgeprune-export-") as tmp:
        dense, sparse = Path(tmp) / "dense.onnx", Path(tmp) / "sparse.onnx"
        with torch.no_grad():
            _export_dense(plain, args, dense)
        report = to_sparse_onnx(dense, sparse, min_sparsity=min_sparsity, index_dtype=index_dtype)
        _check_against(sparse, plain, args, rtol)
        os.replace(sparse, path)
    return report
