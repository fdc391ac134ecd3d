"""The host back end of ``lut_builder`` for ExecuTorch (XNNPACK delegate).

Lowering one single-op module to a ``.pte`` costs 1-5 s here (``to_edge_transform_and_lower``,
measured on two cores; batching many ops into one program as separate methods is no faster), and a
table needs hundreds of points. So the points are timed on XNNPACK through LiteRT's single-op
graphs (``lut_litert``: the same kernel library, written in milliseconds), and the whole models
that calibrate the table, and every verification after it, run on ExecuTorch itself: the
calibration's scale and offset absorb the difference between the two front ends, and the latency
search measures each plan on ExecuTorch before it says met. The table's protocol names this.
Needs torch (to lower the calibration models) and both extras: this machine must be the target.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeprune.targets import lut_litert

RUNTIME = "executorch"
MODEL_SUFFIX = ".pte"
GRAPH = (f"points: {lut_litert.GRAPH} (XNNPACK through LiteRT, as ExecuTorch's XNNPACK delegate runs them); "
         "calibration models: .pte on ExecuTorch")
PROBE_CHANNELS = lut_litert.__dict__.get("PROBE_CHANNELS", (40, 97))
PRECISIONS = lut_litert.PRECISIONS  # int8 points: XNNPACK's QS8 kernels through LiteRT; models: INT8 .pte
GRAPH_INT8 = (f"points: {lut_litert.GRAPH_INT8} (XNNPACK through LiteRT); calibration models: INT8 .pte "
              "(XNNPACKQuantizer) on ExecuTorch")


def runtime_version() -> str:
    from edgeprune.runtimes import get_runtime

    return get_runtime(RUNTIME).version


def time_point(op: dict[str, Any], c_in: int, c_out: int, **timing: Any) -> float:
    """One op's latency on XNNPACK (``lut_litert.time_point``)."""
    return lut_litert.time_point(op, c_in, c_out, **timing)


def time_model(path: str, input_shapes: list[list[int]], *, threads: int, runs: int, warmup: int,
               stat: str = "median", spinning: bool = True, precision: str = "float32") -> float:
    """Latency (ms) of a whole ``.pte`` on ExecuTorch on random inputs, same protocol as the points."""
    import torch

    from edgeprune.runtimes import get_runtime
    from edgeprune.targets import lut_builder as core

    sess = get_runtime(RUNTIME).open(path, threads)
    rng = np.random.default_rng(1)
    call = sess.caller([rng.standard_normal(s).astype(np.float32) for s in input_shapes])
    with torch.no_grad():
        return core.timed(call, runs=runs, warmup=warmup, stat=stat)
