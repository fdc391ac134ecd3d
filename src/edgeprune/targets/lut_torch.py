"""The host back end of ``lut_builder`` for runtimes with no torch-free way to write a file
(ExecuTorch's ``.pte``): each single-op point is a small PyTorch module (``Conv2d`` [+ ReLU/ReLU6]
or ``Linear``) exported by the runtime's plug-in (``edgeprune.runtimes``) and timed in its session
with ``lut_builder``'s protocol. This machine must be the target.

Exporting costs about a second a point with ExecuTorch (``torch.export`` + XNNPACK lowering), so the
files are kept per (op, counts, copy) for the life of the process (a second table at another thread
count re-times them without exporting again) and the staircase sweep covers 48-81 channels instead
of 40-97 (two multiples of 16 with their next steps, as ``lut_builder.fast_step`` needs).
"""
from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.targets import lut_builder as core

RUNTIME = "executorch"
MODEL_SUFFIX = ".pte"
GRAPH = "Conv2d(+bias)[+ReLU/ReLU6] or Linear exported through ExecuTorch + XNNPACK, random weights, batch 1"
PROBE_CHANNELS = (48, 81)  # a shorter staircase sweep (each count is an export): still two multiples of 16
_cache: dict[str, Path] = {}
_folder: list[Path] = []


def runtime_version() -> str:
    from edgeprune.runtimes import get_runtime

    return get_runtime(RUNTIME).version


def op_module(op: dict[str, Any], c_in: int, c_out: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The PyTorch module of one point and its input (the same op ``lut_builder.conv_model_bytes`` writes)."""
    gen = torch.Generator().manual_seed(seed)
    if op["kind"] == "gemm":
        layer: nn.Module = nn.Linear(c_in, c_out)
        x = torch.randn(int(op.get("hw", [1, 1])[0]), c_in, generator=gen)
    elif op["kind"] == "conv":
        top, left, bottom, right = op["pads"]
        groups = c_out if op.get("depthwise") else 1
        c_in = c_out if op.get("depthwise") else c_in
        layer = nn.Conv2d(c_in, c_out, tuple(op["kernel"]), tuple(op["stride"]), dilation=tuple(op.get("dilation", [1, 1])),
                          groups=groups)
        if (top, left) == (bottom, right):
            layer.padding = (top, left)
        else:
            layer = nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), layer)
        x = torch.randn(1, c_in, *op["hw"], generator=gen)
    else:
        raise ValueError(f"unknown op kind {op['kind']!r} (expected 'conv' or 'gemm')")
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), None: None}[op.get("act")]
    return (nn.Sequential(layer, act) if act is not None else layer).eval(), x


def _artifact(op: dict[str, Any], c_in: int, c_out: int, seed: int) -> tuple[Path, torch.Tensor]:
    from edgeprune.runtimes import get_runtime

    key = hashlib.sha1(json.dumps([op, c_in, c_out, seed], sort_keys=True).encode()).hexdigest()[:16]
    module, x = op_module(op, c_in, c_out, seed)
    if key not in _cache:
        if not _folder:
            _folder.append(Path(tempfile.mkdtemp(prefix="edgeprune-lut-")))
            atexit.register(shutil.rmtree, _folder[0], True)
        rt = get_runtime(RUNTIME)
        _cache[key] = rt.export(module, x, _folder[0] / f"{key}{MODEL_SUFFIX}", check=False)
    return _cache[key], x


def time_point(op: dict[str, Any], c_in: int, c_out: int, *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, cold_bytes: int = 0) -> float:
    """Latency (ms) of one op at one channel count (``lut_builder.time_point``'s protocol)."""
    from edgeprune.runtimes import get_runtime

    rt = get_runtime(RUNTIME)
    copies = core.cold_copies(core.weight_bytes(op, c_in, c_out), cold_bytes)
    calls = []
    for k in range(copies):
        path, x = _artifact(op, c_in, c_out, k)
        sess = rt.open(path, threads)
        calls.append(sess.caller(sess.inputs_from((x,), {})))
    turn = itertools.cycle(calls)
    with torch.no_grad():
        return core.timed(lambda: next(turn)(), runs=runs, warmup=warmup * copies, stat=stat)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True) -> float:
    """Latency (ms) of a whole ``.pte`` on random inputs, same protocol as the points."""
    from edgeprune.runtimes import get_runtime

    sess = get_runtime(RUNTIME).open(path, threads)
    rng = np.random.default_rng(1)
    call = sess.caller([rng.standard_normal(s).astype(np.float32) for s in input_shapes])
    with torch.no_grad():
        return core.timed(call, runs=runs, warmup=warmup, stat=stat)
