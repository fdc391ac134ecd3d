"""TensorFlow Lite Micro (TFLM), the microcontroller runtime, run on the host: ``.tflite`` files.

The file is the one LiteRT's converter writes (``litert-torch``; INT8 through
:func:`edgeprune.quantize.litert.quantize_litert`); the interpreter is the ``tflite-micro`` wheel's
(pre-release only: ``pip install --pre tflite-micro``), which runs TFLM's reference kernels, so its
latency is not a device's figure. What it gives exactly is the **arena**: the bytes of SRAM the
model needs on the device for activations, scratch buffers and the interpreter's own records.

Arena: ``Interpreter.from_file(path, arena_size=n)`` plans every buffer into an arena of ``n``
bytes and raises when it does not fit; ``print_allocations()`` writes the
``RecordingMicroAllocator`` report (``Arena allocation total/head/tail N bytes``) to the C-level
stderr, so :func:`measure_arena` captures file descriptor 2, not ``sys.stderr``. The head is the
planned, reused activation memory; the tail holds what persists (tensor records, node structs,
per-channel quantization data). :func:`bisect_arena` finds the smallest ``arena_size`` that loads,
an independent check of the report.

Sessions take float inputs for an INT8 file too: they quantize with the input's parameters and
dequantize integer outputs (what a device's pre/post-processing does), so the same numpy window
runs on an FP32 and an INT8 artifact.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprune.runtimes.base import Inputs, Runtime, Session
from edgeprune.runtimes.errors import ExportError

_LARGE_ARENA = 64 * 2**20  # what a measurement opens with: far above any model that fits a microcontroller


@dataclass(frozen=True)
class Arena:
    """The TFLM arena of one artifact, in bytes, as its allocator reported it.

    Attributes:
        total: head + tail: the ``arena_size`` a device must give the interpreter.
        head: the planned (reused) buffers: activations and kernels' scratch.
        tail: what persists: tensor and node records, per-channel quantization data.
    """

    total: int
    head: int
    tail: int

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "head": self.head, "tail": self.tail}


class TFLMSession(Session):
    """A TFLM host interpreter behind the :class:`Session` interface (float in, float out)."""

    runtime = "tflm"

    def __init__(self, path: Path, version: str, arena_size: int | None = None) -> None:
        from tflite_micro.python.tflite_micro import runtime as tflm

        self.path, self.version, self.threads = path, version, 1  # the interpreter is single-threaded
        with _quiet_stderr():
            self.interp = tflm.Interpreter.from_file(str(path), arena_size=arena_size or _LARGE_ARENA)
        with _quiet_stderr():  # the wrapper prints "index out of range" past the last tensor
            self._in = _details(self.interp.get_input_details, path)
            self._out = _details(self.interp.get_output_details, path)
        self.input_names = [f"input_{i}" for i in range(len(self._in))]
        self.output_names = [f"output_{i}" for i in range(len(self._out))]
        self.precision = "int8" if any(np.issubdtype(d["dtype"], np.integer) for d in self._in) else "f32"

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        if len(arrays) != len(self._in):
            raise ExportError(f"the .tflite file takes {len(self._in)} inputs, given {len(arrays)}")
        for i, (d, a) in enumerate(zip(self._in, arrays)):
            self.interp.set_input(_to_input(np.asarray(a), d), i)
        self.interp.invoke()
        return [_from_output(self.interp.get_output(i), d) for i, d in enumerate(self._out)]


class TFLM(Runtime):
    """TensorFlow Lite Micro's host interpreter on files from LiteRT's converter."""

    name, format, suffix, extra = "tflm", "tflm", ".tflite", "tflm"
    packages, distribution = ("tflite_micro", "litert_torch"), "tflite-micro"

    def _write(self, model, args, kwargs, path: Path) -> None:
        from edgeprune.runtimes.registry import get_runtime

        get_runtime("litert")._write(model, args, kwargs, path)  # the same converter, the same file

    def _open(self, path: Path, threads: int | None, arena_size: int | None = None) -> Session:
        return TFLMSession(path, self.version, arena_size)

    def arena(self, path: str | os.PathLike) -> Arena:
        """The arena ``path`` needs (see :func:`measure_arena`)."""
        self.require()
        return measure_arena(path)


def measure_arena(path: str | os.PathLike) -> Arena:
    """Load ``path`` in the TFLM interpreter and read its allocator's report of the arena.

    Args:
        path: a ``.tflite`` file.

    Returns:
        An :class:`Arena`.

    Raises:
        ExportError: the file does not load, or the report does not parse.
    """
    from tflite_micro.python.tflite_micro import runtime as tflm

    try:
        with _quiet_stderr():
            interp = tflm.Interpreter.from_file(str(path), arena_size=_LARGE_ARENA)
    except Exception as exc:  # the wrapper raises RuntimeError with the C log on stderr
        raise ExportError(f"tflm cannot load {path}: {type(exc).__name__}: {exc}") from exc
    with _captured_stderr() as captured:
        interp.print_allocations()
    text = captured()
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if set(found) != {"total", "head", "tail"}:
        raise ExportError(f"tflm: no arena report for {path} (got {text[:300]!r})")
    return Arena(found["total"], found["head"], found["tail"])


def bisect_arena(path: str | os.PathLike, lo: int = 0, hi: int | None = None, tol: int = 16) -> int:
    """The smallest ``arena_size`` (within ``tol`` bytes) with which ``path`` loads and runs once.

    An independent check of :func:`measure_arena`: it does not read the allocator's report.

    Args:
        path: a ``.tflite`` file.
        lo: a size known to fail (0).
        hi: a size known to work (default: the reported total plus 4 KiB).
        tol: stop when ``hi - lo <= tol``.

    Returns:
        The smallest working size found (``hi`` at the end).
    """
    from tflite_micro.python.tflite_micro import runtime as tflm

    hi = hi if hi is not None else measure_arena(path).total + 4096

    def fits(n: int) -> bool:
        try:
            with _quiet_stderr():
                interp = tflm.Interpreter.from_file(str(path), arena_size=n)
                for i, d in enumerate(_details(interp.get_input_details, Path(path))):  # noqa: B023
                    interp.set_input(np.zeros(d["shape"], d["dtype"]), i)
                interp.invoke()
            return True
        except Exception:  # too small: allocation fails with a RuntimeError
            return False

    if not fits(hi):
        raise ExportError(f"tflm: {path} does not load with an arena of {hi} bytes")
    while hi - lo > tol:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _details(getter, path: Path) -> list[dict]:
    out, i = [], 0
    while True:
        try:
            d = getter(i)
        except Exception:  # the wrapper raises past the last index
            break
        if not d:
            break
        q = d.get("quantization_parameters") or {}
        scales, zeros = q.get("scales", np.zeros(0)), q.get("zero_points", np.zeros(0))
        out.append({"dtype": d["dtype"], "shape": tuple(int(s) for s in d["shape"]),
                    "scale": float(scales[0]) if len(scales) else 0.0,
                    "zero": int(zeros[0]) if len(zeros) else 0})
        i += 1
    if not out:
        raise ExportError(f"tflm: {path} reports no tensors")
    return out


def _to_input(a: np.ndarray, d: dict) -> np.ndarray:
    if np.issubdtype(d["dtype"], np.integer) and np.issubdtype(a.dtype, np.floating):
        info = np.iinfo(d["dtype"])
        a = np.clip(np.round(a / d["scale"]) + d["zero"], info.min, info.max)
    return np.ascontiguousarray(a.reshape(d["shape"]), dtype=d["dtype"])


def _from_output(y: np.ndarray, d: dict) -> np.ndarray:
    y = np.array(y, copy=True)
    if np.issubdtype(y.dtype, np.integer) and d["scale"]:
        return ((y.astype(np.float32) - d["zero"]) * d["scale"]).astype(np.float32)
    return y


@contextlib.contextmanager
def _captured_stderr(fds: tuple[int, ...] = (1, 2)) -> Iterator:
    """Capture what C code writes to file descriptors 1 and 2 (the TFLM log) while the block runs."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(fd) for fd in fds]
        text: list[str] = []
        try:
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield lambda: "".join(text)
        finally:
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            text.append(tmp.read().decode(errors="replace"))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keep the interpreter's C-level log (allocation failures, op notes) off the user's terminal."""
    with _captured_stderr():
        yield
