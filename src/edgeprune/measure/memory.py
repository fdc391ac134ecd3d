"""Peak memory of one inference: the bytes PyTorch eager holds at its worst moment.

Both methods count bytes allocated during one forward pass under ``torch.no_grad``, above what
existed before the call; weights and inputs are reported beside the peak, not inside it.

``"allocator"`` (the default): ``torch.profiler`` with ``profile_memory=True`` records every
allocation and free of torch's CPU allocator; the peak of their running sum is the peak. It
includes kernels' scratch buffers (oneDNN reorders, im2col), so it is the complete number. It costs
about a second per call; kineto's log lines on stderr are silenced while it runs.

``"tensors"``: a ``TorchDispatchMode`` sees every tensor an ATen op returns. A new storage (keyed
by its data pointer; views and in-place results share their base's storage and add nothing) adds
its bytes when created and subtracts them when the last tensor using it is freed (a
``weakref.finalize`` per tensor). Fast, silent and deterministic, but blind to scratch buffers
that kernels allocate and free inside one op.

On torchvision resnet18 (224x224, batch 1) "tensors" gives 6.1 MiB (the first convolution's
3.06 MiB output and the BatchNorm output beside it) and "allocator" 9.6 MiB (plus one more buffer of
that size inside the convolution kernel).

Not used: ``tracemalloc`` sees only Python's allocator, not torch's, so it reports almost nothing;
process RSS moves with allocator caching and page reuse and is dominated by the interpreter.
Both numbers are PyTorch eager's; ONNX Runtime plans its own arena and may need more or less.
"""
from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgeprune.specs import ExampleInputs, flat_inputs, split_inputs


@dataclass(frozen=True)
class MemoryReport:
    """Memory of one inference in PyTorch eager, in bytes.

    Attributes:
        peak_activation_bytes: most bytes allocated by the forward pass alive at once
            (activations, outputs and, with method "allocator", kernel scratch buffers).
        weight_bytes: parameters and buffers (shared tensors once).
        input_bytes: the input tensors.
        method: "allocator" or "tensors" (see the module docstring).
    """

    peak_activation_bytes: int
    weight_bytes: int
    input_bytes: int
    method: str = "allocator"

    @property
    def peak_bytes(self) -> int:
        """Weights + inputs + peak activations: what one inference needs to have in memory."""
        return self.peak_activation_bytes + self.weight_bytes + self.input_bytes


def measure_memory(model: nn.Module, example_inputs: ExampleInputs,
                   method: Literal["allocator", "tensors"] = "allocator") -> MemoryReport:
    """Measure the peak memory of one inference (see the module docstring for the methods).

    Args:
        model: the model, run once as it is under ``torch.no_grad``.
        example_inputs: a tensor, tuple or dict of tensors.
        method: ``"allocator"`` (torch.profiler allocation trace) or ``"tensors"`` (live tensors).

    Returns:
        A :class:`MemoryReport`.

    Example:
        >>> r = measure_memory(nn.Linear(256, 256), torch.randn(4, 256), method="tensors")
        >>> r.peak_activation_bytes  # the (4, 256) float output
        4096
    """
    args, kwargs = split_inputs(example_inputs)
    if method == "allocator":
        peak = _allocator_peak(model, args, kwargs)
    elif method == "tensors":
        tracker = _LiveBytes()
        with torch.no_grad(), tracker:
            out = model(*args, **kwargs)
        del out
        peak = tracker.peak
    else:
        raise ValueError(f"method must be 'allocator' or 'tensors', not {method!r}")
    seen: set[int] = set()
    weight_bytes = 0
    for t in list(model.parameters()) + list(model.buffers()):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            weight_bytes += t.untyped_storage().nbytes()
    input_bytes = sum(t.untyped_storage().nbytes() for t in flat_inputs(example_inputs))
    return MemoryReport(peak, weight_bytes, input_bytes, method)


def _allocator_peak(model: nn.Module, args, kwargs) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _silent_stderr(), torch.no_grad(), \
            profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(*args, **kwargs)
        del out  # freed inside the trace, so the running sum returns to ~0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()  # negative for a free
        peak = max(peak, current)
    return peak


@contextlib.contextmanager
def _silent_stderr() -> Iterator[None]:
    # kineto's C++ logger writes "profiler_start/stop" lines to file descriptor 2 whatever
    # sys.stderr is; silence the descriptor itself. Python exceptions still raise.
    fd = 2
    try:
        saved = os.dup(fd)
    except OSError:  # no descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class _LiveBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._refs: dict[int, int] = {}  # storage data_ptr -> live tensors created here that use it
        self._size: dict[int, int] = {}
        self._known: set[int] = set()  # storages that existed before the call (weights, inputs)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                ptr = t.untyped_storage().data_ptr()
                if ptr not in self._refs:
                    self._known.add(ptr)  # an input or weight: not ours to count
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self._known:
            return
        if ptr not in self._refs:
            self._refs[ptr] = 0
            self._size[ptr] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self._refs[ptr] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            del self._refs[ptr]
            self.current -= self._size.pop(ptr)
