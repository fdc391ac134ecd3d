"""The registry of runtime plug-ins: a name -> ``module:class`` table, imported on first use.

Registering a plug-in imports nothing; :func:`get_runtime` imports its module (which itself
imports the runtime's package only when it exports or opens something).
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from edgeprune.runtimes.base import Runtime, Session
from edgeprune.runtimes.errors import UnknownRuntimeError

_PLUGINS: dict[str, str] = {
    "onnxruntime": "edgeprune.runtimes.onnxruntime:OnnxRuntime",
    "litert": "edgeprune.runtimes.litert:LiteRT",
    "executorch": "edgeprune.runtimes.executorch:ExecuTorch",
    "openvino": "edgeprune.runtimes.openvino:OpenVINO",
    "tflm": "edgeprune.runtimes.tflm:TFLM",
}
_ALIASES = {"ort": "onnxruntime", "tflite": "litert", "et": "executorch", "ov": "openvino", "tflite-micro": "tflm"}
_loaded: dict[str, Runtime] = {}


def runtime_names() -> list[str]:
    """The registered runtimes, ONNX Runtime (the core one) first."""
    return list(_PLUGINS)


def register(name: str, target: str) -> None:
    """Add a plug-in: ``target`` is ``"package.module:Class"`` (a :class:`Runtime` subclass)."""
    _PLUGINS[name] = target
    _loaded.pop(name, None)


def get_runtime(name: str) -> Runtime:
    """The plug-in registered as ``name`` (``onnxruntime``, ``litert``, ``executorch``, ``openvino``).

    Raises:
        UnknownRuntimeError: no such runtime (the message lists the registered ones).
    """
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in _PLUGINS:
        raise UnknownRuntimeError(f"unknown runtime {name!r}; use one of {', '.join(_PLUGINS)}")
    if key not in _loaded:
        module, _, cls = _PLUGINS[key].partition(":")
        _loaded[key] = getattr(importlib.import_module(module), cls)()
    return _loaded[key]


def runtime_for_format(fmt: str) -> Runtime:
    """The runtime whose artifact format is ``fmt`` (``onnx``, ``tflite``, ``pte``, ``openvino``)."""
    for name in _PLUGINS:
        rt = get_runtime(name)
        if rt.format == fmt.strip().lower():
            return rt
    formats = ", ".join(get_runtime(n).format for n in _PLUGINS)
    raise UnknownRuntimeError(f"unknown format {fmt!r}; use one of {formats}")


def open_session(runtime: str, path: str | os.PathLike, threads: int | None = None, **options: Any) -> Session:
    """The session factory: ``get_runtime(runtime).open(path, threads, **options)``."""
    return get_runtime(runtime).open(path, threads, **options)


def parse_runtimes(text: str | list[str]) -> list[Runtime]:
    """``"onnxruntime,litert"`` (or a list) as plug-ins, each checked to be installed.

    Raises:
        UnknownRuntimeError / RuntimeMissingError: naming the first bad one.
    """
    names = [n for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    out = []
    for n in names:
        rt = get_runtime(n)
        rt.require()
        if rt not in out:
            out.append(rt)
    if not out:
        raise UnknownRuntimeError(f"no runtime given; use some of {', '.join(_PLUGINS)}")
    return out
