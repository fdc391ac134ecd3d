"""Runtimes as plug-ins: ONNX Runtime (core), LiteRT, ExecuTorch, OpenVINO (extras).

Each plug-in exports a PyTorch model to its file (checked against PyTorch, written atomically),
opens it with a thread count and runs it. One parity check (:mod:`.parity`) and one interleaved
timing protocol (:mod:`.timing`) serve them all; :func:`open_session` is the one session factory.

    >>> from edgeprune.runtimes import get_runtime  # doctest: +SKIP
    >>> rt = get_runtime("litert")                   # doctest: +SKIP
    >>> path = rt.export(model, x, "model.tflite")   # doctest: +SKIP
    >>> rt.open(path, threads=2).run([x.numpy()])    # doctest: +SKIP

Importing this package imports no runtime: each plug-in imports its package when it is used, and
a missing one raises :class:`RuntimeMissingError` with ``pip install 'edgeprune[<extra>]'``.
"""
from edgeprune.runtimes.base import Runtime, Session
from edgeprune.runtimes.errors import ExportError, ParityError, RuntimeMissingError, UnknownRuntimeError
from edgeprune.runtimes.parity import FP32, PARITY_RTOL, ParityReport, Tolerance, check_parity
from edgeprune.runtimes.registry import (get_runtime, open_session, parse_runtimes, register, runtime_for_format,
                                         runtime_names)
from edgeprune.runtimes.timing import Artifact, Measured, measure_interleaved, measure_models

__all__ = ["FP32", "PARITY_RTOL", "Artifact", "ExportError", "Measured", "ParityError", "ParityReport", "Runtime",
           "RuntimeMissingError", "Session", "Tolerance", "UnknownRuntimeError", "check_parity", "get_runtime",
           "measure_interleaved", "measure_models", "open_session", "parse_runtimes", "register",
           "runtime_for_format", "runtime_names"]
