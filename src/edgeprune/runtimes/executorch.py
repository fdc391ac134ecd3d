"""ExecuTorch with the XNNPACK delegate: ``.pte`` files, PyTorch's own edge path.

Export: ``torch.export.export`` -> ``executorch.exir.to_edge_transform_and_lower(...,
partitioner=[XnnpackPartitioner()])`` -> ``.to_executorch().buffer``. Lowering is slow (12-21 s
for a 224 px CNN on two cores). Run: ``executorch.runtime.Runtime.get().load_program(path)
.load_method("forward").execute(tensors)``.

Threads: XNNPACK's thread pool is one per process; it is reset to ``threads`` before each
``load_method`` and before each timed call of a session whose count differs from the pool's, so
sessions with different counts can be interleaved (the reset costs a little, once per switch).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from edgeprune.runtimes.base import Inputs, Runtime, Session
from edgeprune.runtimes.errors import ExportError

_pool = {"threads": None}  # what the process-wide XNNPACK pool was last set to


def _set_threads(threads: int | None) -> None:
    if threads is None or _pool["threads"] == threads:
        return
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(int(threads))
    _pool["threads"] = threads


class ExecuTorchSession(Session):
    """A loaded ``forward`` method of a ``.pte`` program behind the :class:`Session` interface."""

    runtime = "executorch"

    def __init__(self, path: Path, threads: int | None, version: str) -> None:
        from executorch.runtime import Runtime as EtRuntime

        self.path, self.threads, self.version = path, threads, version
        _set_threads(threads)
        with contextlib.redirect_stderr(io.StringIO()):
            self.program = EtRuntime.get().load_program(str(path))
            self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.input_names = [f"input_{i}" for i in range(meta.num_inputs())]
        self.output_names = [f"output_{i}" for i in range(meta.num_outputs())]

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        _set_threads(self.threads)
        outs = self.method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [o.numpy().copy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outs]

    def caller(self, inputs: Inputs):
        arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        execute, threads = self.method.execute, self.threads

        def call():
            _set_threads(threads)
            return execute(tensors)

        return call


class ExecuTorch(Runtime):
    """ExecuTorch (XNNPACK delegate)."""

    name, format, suffix, extra = "executorch", "pte", ".pte", "executorch"
    packages, distribution = ("executorch",), "executorch"

    def _write(self, model, args, kwargs, path: Path) -> None:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, tuple(args), kwargs or None)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(lowered.buffer)

    def _open(self, path: Path, threads: int | None) -> Session:
        if path.stat().st_size == 0:
            raise ExportError(f"{path} is empty")
        return ExecuTorchSession(path, threads, self.version)
