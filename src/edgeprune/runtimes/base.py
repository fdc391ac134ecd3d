"""The runtime interface: export a PyTorch model to the runtime's file, open it with a thread
count, run it. Parity (:mod:`edgeprune.runtimes.parity`) and interleaved timing
(:mod:`edgeprune.runtimes.timing`) work on any :class:`Session`, so each plug-in only says how
to write its file and how to run it.

A plug-in imports its runtime's package inside its methods, never at module import, so
``import edgeprune`` stays light and a missing package is reported by :meth:`Runtime.require`
with the pip command that adds it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.runtimes.errors import ExportError, RuntimeMissingError
from edgeprune.runtimes.parity import FP32, ParityReport, Tolerance, check_parity
from edgeprune.specs import ExampleInputs, eval_mode, split_inputs

Inputs = Sequence[np.ndarray] | dict[str, np.ndarray]


class Session(ABC):
    """One loaded artifact, ready to run.

    Attributes:
        runtime: the runtime's registry name.
        version: the runtime package's version.
        path: the artifact.
        threads: the thread count it was opened with (``None``: the runtime's default).
        precision: the precision its kernels compute in (``"f32"`` for every FP32 artifact here;
            OpenVINO reports what it compiled to).
        input_names / output_names: as the artifact names them.
    """

    runtime: str = ""
    version: str = ""
    path: Path
    threads: int | None = None
    precision: str = "f32"
    input_names: list[str]
    output_names: list[str]

    @abstractmethod
    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Run once on positional arrays (or a ``{name: array}`` dict); returns the outputs in order."""

    def inputs_from(self, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> Inputs:
        """PyTorch-style ``(args, kwargs)`` as this session's inputs (positional, then keyword values)."""
        return [_numpy(t) for t in list(args) + list(kwargs.values())]

    def caller(self, inputs: Inputs) -> Callable[[], object]:
        """A no-argument call that runs once on ``inputs`` (what the timing protocol times)."""
        return lambda: self.run(inputs)

    def describe(self) -> dict[str, Any]:
        """``{"runtime", "version", "threads", "precision"}``: what a latency figure must show beside it."""
        return {"runtime": self.runtime, "version": self.version, "threads": self.threads,
                "precision": self.precision}


class Runtime(ABC):
    """A runtime plug-in.

    Attributes:
        name: registry name (``onnxruntime``, ``litert``, ``executorch``, ``openvino``).
        format: the ``--format`` name of its artifact (``onnx``, ``tflite``, ``pte``, ``openvino``).
        suffix: the artifact's file suffix (``.onnx``, ``.tflite``, ``.pte``, ``.xml``).
        extra: the pip extra that installs it (``None`` for a core dependency).
        packages: import names that must be importable.
        distribution: the package whose version is reported.
    """

    name: str = ""
    format: str = ""
    suffix: str = ""
    extra: str | None = None
    packages: tuple[str, ...] = ()
    distribution: str = ""

    # --- what a plug-in implements ------------------------------------------------------------
    @abstractmethod
    def _write(self, model: nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
               path: Path, **options: Any) -> None:
        """Write the artifact of ``model`` (in eval mode) to ``path`` (and its companion files beside it)."""

    @abstractmethod
    def _open(self, path: Path, threads: int | None, **options: Any) -> Session:
        """Load ``path`` for running with ``threads``."""

    def companions(self, path: Path) -> list[Path]:
        """Files written beside ``path`` that belong to the artifact (OpenVINO's ``.bin``)."""
        return []

    # --- the interface ------------------------------------------------------------------------
    def available(self) -> bool:
        """Whether the runtime's packages can be imported (without importing them)."""
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def require(self) -> None:
        """Raise :class:`RuntimeMissingError` naming the pip command when a package is missing."""
        for package in self.packages:
            try:
                importlib.import_module(package)
            except ImportError as exc:
                how = f"pip install 'edgeprune[{self.extra}]'" if self.extra else f"pip install {self.distribution}"
                raise RuntimeMissingError(
                    f"runtime {self.name!r} needs the package {package!r}, which does not import ({exc}); "
                    f"install it with: {how}") from exc

    @property
    def version(self) -> str:
        """The installed version of the runtime's package (``""`` when missing)."""
        from importlib import metadata

        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return ""

    def artifact_path(self, folder: str | os.PathLike, stem: str = "model") -> Path:
        """Where the artifact of ``stem`` goes in ``folder`` (``model.onnx``, ``model.tflite``, ...)."""
        return Path(folder) / f"{stem}{self.suffix}"

    def export(self, model: nn.Module, example_inputs: ExampleInputs, path: str | os.PathLike, *,
               check: bool = True, tol: Tolerance = FP32, seed: int = 0, **options: Any) -> Path:
        """Export ``model`` to this runtime's file, checked against PyTorch, written atomically.

        The file (and any companion) is written into a temporary folder beside ``path``, opened
        and compared with PyTorch (:func:`edgeprune.runtimes.parity.check_parity`), and only then
        renamed into place; on any failure nothing at ``path`` changes.

        Args:
            model: the model (exported in eval mode; its flags are restored).
            example_inputs: a tensor, tuple or dict of tensors.
            path: the artifact to write; parent folders are created.
            check: run the parity check.
            tol: its tolerance.
            seed: seed of the check's random input.
            **options: the converter's options (OpenVINO: ``onnx=`` a checked ONNX file to convert;
                ONNX Runtime: ``exporter=``, ``dynamic_batch=``).

        Returns:
            The path written.

        Raises:
            RuntimeMissingError: the runtime's extra is not installed.
            ExportError: the converter failed or the file does not run.
            ParityError: the outputs differ beyond ``tol`` (nothing is written).
        """
        self.require()
        path = Path(path)
        args, kwargs = split_inputs(example_inputs)
        with _staged(path, [p.name for p in self.companions(path)]) as tmp, eval_mode(model):
            try:
                self._write(model, args, kwargs, tmp, **options)
            except ExportError:
                raise
            except Exception as exc:  # converters raise many types; all mean "could not export"
                raise ExportError(f"{self.name}: exporting {type(model).__name__} failed: "
                                  f"{type(exc).__name__}: {str(exc)[:500]}") from exc
            if check:
                self.check(tmp, model, example_inputs, tol=tol, seed=seed)
        return path

    def open(self, path: str | os.PathLike, threads: int | None = None, **options: Any) -> Session:
        """Load an artifact for running (the one session factory of this runtime).

        Args:
            path: the artifact.
            threads: worker threads (``None``: the runtime's default).
            **options: runtime-specific settings (ONNX Runtime: ``spin``; OpenVINO: ``precision``).

        Raises:
            RuntimeMissingError: the extra is not installed.
            ExportError: the file does not load.
        """
        self.require()
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        path = Path(path)
        if not path.exists():
            raise ExportError(f"{self.name}: no artifact at {path}")
        try:
            return self._open(path, threads, **options)
        except (ExportError, TypeError):
            raise
        except Exception as exc:
            raise ExportError(f"{self.name} cannot load {path}: {type(exc).__name__}: {exc}") from exc

    def check(self, path: str | os.PathLike, model: nn.Module, example_inputs: ExampleInputs, *,
              tol: Tolerance = FP32, seed: int = 0, dynamic_batch: bool = False) -> ParityReport:
        """Open ``path`` and compare it with ``model`` (see :func:`edgeprune.runtimes.parity.check_parity`)."""
        return check_parity(self.open(path), model, example_inputs, tol=tol, seed=seed, dynamic_batch=dynamic_batch)


@contextlib.contextmanager
def _staged(path: Path, companions: list[str]) -> Iterator[Path]:
    """Yield a path in a fresh folder beside ``path``; on success move its companions, then it, into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    folder.mkdir()
    try:
        yield folder / path.name
        for name in companions + [path.name]:  # the main file last: it is what readers look for
            os.replace(folder / name, path.parent / name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()
