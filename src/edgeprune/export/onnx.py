"""Export to ONNX, checked against PyTorch, written atomically.

Which exporter: ``torch.onnx.export(dynamo=True)`` (torch.export based) is the default of
torch >= 2.9 and the one that stays; the TorchScript exporter (``dynamo=False``) is deprecated and
"will be removed". On torch 2.14 both exported torchvision resnet18, mobilenet_v2, vit_b_16 and
timm vit_tiny, convnext_atto, efficientnet_b0 and swin_tiny with outputs within 2e-6 of PyTorch;
TorchScript is 3-7x faster to export, dynamo names inputs after ``forward``'s parameters and takes
keyword inputs natively. So ``exporter="auto"`` uses dynamo and falls back to TorchScript only when
dynamo raises (a warning says so); ``"dynamo"`` / ``"torchscript"`` pick one. Dynamo writes weights
to a side ``.data`` file by default; we ask for one self-contained file (``external_data=False``)
so that the file is the model, its size is the model's size and one rename publishes it.
The exporter traces a warmed-up copy with parametrizations (sparsity masks) baked in; see
:func:`_for_export`.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.utils._pytree import tree_flatten

from edgeprune.graph.trace import warm_copy
from edgeprune.specs import ExampleInputs, eval_mode, split_inputs
from edgeprune.runtimes.errors import ExportError, ParityError
from edgeprune.runtimes.parity import PARITY_RTOL, Tolerance

Exporter = Literal["auto", "dynamo", "torchscript"]


# One error type for every runtime's artifact (see edgeprune.runtimes.errors); the names stay.
ExportMismatchError = ParityError


def export_onnx(model: nn.Module, example_inputs: ExampleInputs, path: str | os.PathLike, *,
                dynamic_batch: bool = False, opset: int | None = None, check: bool = True,
                rtol: float = PARITY_RTOL, atol: float = 0.0, sparse: bool = False,
                exporter: Exporter = "auto", seed: int = 0) -> Path:
    """Export ``model`` to one ONNX file and check it against PyTorch.

    The check runs the file in ONNX Runtime (CPU) on the example input, on a second random input
    of the same shape (seeded) and, with ``dynamic_batch``, on a batch of 2, and compares every
    output with ``model``'s. The file is written to a temporary name beside ``path`` and renamed
    only when export and check succeed, so a failure never leaves a half-written or wrong file.
    The model is exported in eval mode; its train/eval flags are restored afterwards.

    Args:
        model: the model to export.
        example_inputs: a tensor, a tuple of tensors (positional) or a dict (keyword inputs).
        path: where to write the ``.onnx`` file; parent folders are created.
        dynamic_batch: make dimension 0 of every input and output symbolic.
        opset: ONNX opset version; ``None`` lets the exporter choose.
        check: run the parity check (strongly recommended).
        rtol: relative tolerance of the check: every output within ``atol + rtol * max |torch|``
            (:mod:`edgeprune.runtimes.parity`, the check every runtime's artifact passes).
        atol: absolute tolerance of the check.
        sparse: store weights as sparse initializers via ``edgeprune.export.sparse_onnx``.
        exporter: ``"auto"`` (dynamo, falling back to TorchScript), ``"dynamo"`` or ``"torchscript"``.
        seed: seed of the second check input.

    Returns:
        The path written.

    Raises:
        ExportError: the exporter failed or ONNX Runtime cannot run the file.
        ExportMismatchError: outputs differ beyond tolerance (the file is not written).
        NotImplementedError: ``sparse=True`` but the sparse exporter is not installed.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        >>> export_onnx(m, torch.randn(1, 4), "/tmp/edgeprune-doc.onnx").name
        'edgeprune-doc.onnx'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_sparse = _sparse_converter() if sparse else None
    tol = Tolerance(rtol, atol)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp_sparse = tmp.with_suffix(".sparse.tmp")
    try:
        with eval_mode(model):
            _export(_for_export(model, example_inputs), example_inputs, tmp, dynamic_batch=dynamic_batch, opset=opset, exporter=exporter)
            if check:
                check_onnx(tmp, model, example_inputs, dynamic_batch=dynamic_batch, tol=tol, seed=seed)
            final = tmp
            if to_sparse is not None:
                to_sparse(tmp, tmp_sparse)
                if check:
                    check_onnx(tmp_sparse, model, example_inputs, dynamic_batch=dynamic_batch, tol=tol, seed=seed)
                final = tmp_sparse
        os.replace(final, path)
    finally:
        for leftover in (tmp, tmp_sparse):
            leftover.unlink(missing_ok=True)
    return path


def check_onnx(onnx_path: str | os.PathLike, model: nn.Module, example_inputs: ExampleInputs, *,
               dynamic_batch: bool = False, tol: Tolerance = Tolerance(), seed: int = 0) -> None:
    """Compare an ONNX file's outputs with ``model``'s on the check inputs (see :func:`export_onnx`).

    The runtimes' one parity check (:func:`edgeprune.runtimes.parity.check_parity`) on an ONNX
    Runtime session.

    Args:
        onnx_path: the file to run in ONNX Runtime.
        model: the PyTorch model it should match (run under ``torch.no_grad``).
        example_inputs: the example input; a seeded random one of the same shape is also checked.
        dynamic_batch: also check a batch of 2 (example and random input concatenated).
        tol: the tolerance.
        seed: seed of the random input.

    Raises:
        ExportError: ONNX Runtime cannot load or run the file.
        ExportMismatchError: an output differs beyond tolerance.
    """
    from edgeprune.runtimes import check_parity, open_session

    check_parity(open_session("onnxruntime", onnx_path), model, example_inputs, tol=tol, seed=seed,
                 dynamic_batch=dynamic_batch)


def run_session(session, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Run an ONNX Runtime session on PyTorch-style ``(args, kwargs)`` inputs.

    Inputs are matched by name when the graph's input names are the keyword names, otherwise by
    position (positional inputs first, then keyword inputs in dict order).

    Args:
        session: an ``onnxruntime.InferenceSession``.
        args: positional input tensors.
        kwargs: keyword input tensors.

    Returns:
        The session's outputs, in graph order.
    """
    return session.run(None, onnx_feeds(session, args, kwargs))


def onnx_feeds(session, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The feed for ``session.run`` (see :func:`run_session` for the matching rule).

    Args:
        session: an ``onnxruntime.InferenceSession``.
        args: positional input tensors.
        kwargs: keyword input tensors.

    Returns:
        ``{graph input name: numpy array}``.

    Raises:
        ExportError: the graph has a different number of inputs than the model was given.
    """
    from edgeprune.runtimes.onnxruntime import feeds

    return feeds([i.name for i in session.get_inputs()], args, kwargs)


def _for_export(model: nn.Module, example_inputs: ExampleInputs) -> nn.Module:
    """The copy of ``model`` that the exporter traces: warmed up, every parametrization baked in.

    A copy, because exporting runs the forward under the exporter's tracing tensors: a model that
    stores state in its forward (YOLO heads keep their anchors) would keep fake tensors and fail
    on its next call. Warmed up (it has run the example input once, as the engine's trace does;
    see ``edgeprune.graph.trace.warm_copy``), so that the file holds the forward every later call
    runs, without the first call's one-off work.

    Baked, because the dynamo exporter keeps a parametrized weight as its ``original`` tensor plus
    the parametrization's ops: a masked weight becomes the dense original, a boolean mask and a
    Cast + Mul run on every inference. Baking gives the file a deployment wants (one weight
    tensor, zeros in place), so sparse initializers and file sizes mean what they say. The parity
    check still compares against ``model`` itself.
    """
    baked = warm_copy(model, example_inputs)
    for module in list(baked.modules()):
        if parametrize.is_parametrized(module):
            # deepcopy shares parametrize's generated class with the original, and removing a
            # parametrization deletes the property from that class: give the copy its own class.
            cls = module.__class__
            body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, body)
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return baked


def _sparse_converter():
    try:
        module = importlib.import_module("edgeprune.export.sparse_onnx")
    except ModuleNotFoundError as exc:
        if exc.name not in ("edgeprune.export.sparse_onnx", "edgeprune.export"):
            raise
        raise NotImplementedError("sparse ONNX export needs edgeprune.export.sparse_onnx (to_sparse_onnx), "
                                  "which is not installed in this version") from exc
    return module.to_sparse_onnx


def _export(model: nn.Module, example_inputs: ExampleInputs, path: Path, *, dynamic_batch: bool,
            opset: int | None, exporter: Exporter) -> None:
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', not {exporter!r}")
    args, kwargs = split_inputs(example_inputs)
    if exporter in ("auto", "dynamo"):
        try:
            _export_dynamo(model, args, kwargs, path, dynamic_batch, opset)
            return
        except Exception as exc:  # the exporter raises many types; all mean "could not export"
            if exporter == "dynamo":
                raise ExportError(f"torch.onnx.export(dynamo=True) failed: {type(exc).__name__}: {exc}") from exc
            warnings.warn(f"dynamo ONNX export failed ({type(exc).__name__}: {str(exc)[:200]}); "
                          "falling back to the TorchScript exporter", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
    try:
        _export_torchscript(model, args, kwargs, path, dynamic_batch, opset)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export(dynamo=False) failed: {type(exc).__name__}: {exc}") from exc


def _export_dynamo(model, args, kwargs, path, dynamic_batch, opset) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({k: {0: batch} for k in kwargs} if kwargs else tuple({0: batch} for _ in args))
    with _quiet():
        torch.onnx.export(model, args, str(path), kwargs=kwargs or None, dynamo=True, external_data=False,
                          opset_version=opset, dynamic_shapes=dynamic_shapes, verbose=False)


def _export_torchscript(model, args, kwargs, path, dynamic_batch, opset) -> None:
    with torch.no_grad():
        n_out = len(_flat_tensors(model(*args, **kwargs)))
    input_names = [f"input_{i}" for i in range(len(args))] + list(kwargs)
    output_names = [f"output_{i}" for i in range(n_out)]
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    call_args = args + ((kwargs,) if kwargs else ())  # a trailing dict is passed as keyword inputs
    with _quiet():
        torch.onnx.export(model, call_args, str(path), dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True, verbose=False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Exporters print progress and deprecation notices; errors still arrive as exceptions.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _flat_tensors(output) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(output)
    return [t for t in leaves if isinstance(t, torch.Tensor)]
