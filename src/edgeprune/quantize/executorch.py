"""ExecuTorch static INT8: PyTorch's PT2E flow with ExecuTorch's ``XNNPACKQuantizer``, lowered to XNNPACK.

``torch.export`` -> ``prepare_pt2e(XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
is_per_channel=True)))`` (int8 activations per tensor, int8 weights per channel, symmetric) -> the
calibration batches -> ``convert_pt2e`` -> ``torch.export`` again -> ``to_edge_transform_and_lower(
partitioner=[XnnpackPartitioner()])`` -> ``.to_executorch()``. The file takes and returns float:
XNNPACK quantizes the input and dequantizes the output inside the delegate.

Fake-quant reference: the ``convert_pt2e`` module run in PyTorch (float ops between quantize and
dequantize at the observers' scales), which is what the partitioner lowers to int8 kernels. The
step of the check is the scale of the dequantize that produces the output.
"""
from __future__ import annotations

import contextlib
import io
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeprune.quantize.calibration import check_batches
from edgeprune.quantize.errors import QuantizeError, require
from edgeprune.quantize.reference import ParityReport, compare_steps

RUNTIME = "ExecuTorch"


@dataclass
class ExecuTorchInt8:
    """What :func:`quantize_executorch` wrote: the file, its bytes, the fake-quant check, and whether
    every op went to the XNNPACK delegate (``undelegated``: the op names left to portable kernels)."""

    path: Path
    bytes: int
    undelegated: list[str]
    parity: ParityReport


def quantize_executorch(model: nn.Module, example: torch.Tensor, batches: Sequence[np.ndarray],
                        out_path: str | os.PathLike, *, check_inputs: Sequence[np.ndarray] | None = None
                        ) -> ExecuTorchInt8:
    """Quantize ``model`` to a static INT8 ``.pte`` (XNNPACK) and check it against its fake-quant reference.

    Args:
        model: the (pruned, fine-tuned) model, one tensor input.
        example: its example input, batch 1.
        batches: calibration inputs ``(batch, *sample_shape)``, run sample by sample.
        out_path: the ``.pte`` to write (beside, then renamed).
        check_inputs: inputs for the check (default: the first calibration batch).

    Returns:
        An :class:`ExecuTorchInt8`.

    Raises:
        CalibrationDataError: a batch whose sample shape is not the example's.
        QuantizeError: a step of the flow failed (named).
        QuantizeMismatchError: the file disagrees with its fake-quant reference.
    """
    require("executorch", "executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    out_path = Path(out_path)
    sample = tuple(example.shape[1:])
    check_batches(batches, "input", ("batch", *sample))
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            step = "torch.export"
            try:
                prepared = prepare_pt2e(torch.export.export(model.eval(), (example,)).module(), quantizer)
                step = "calibration"
                for b in batches:
                    for i in range(b.shape[0]):
                        prepared(torch.from_numpy(b[i:i + 1]))
                step = "convert_pt2e"
                reference = convert_pt2e(prepared)
                step = "lowering to XNNPACK"
                program = to_edge_transform_and_lower(torch.export.export(reference, (example,)),
                                                      partitioner=[XnnpackPartitioner()])
                undelegated = sorted({str(n.target).split(".")[-2] if "." in str(n.target) else str(n.target)
                                      for n in program.exported_program().graph.nodes
                                      if n.op == "call_function" and "executorch_call_delegate" not in str(n.target)
                                      and "getitem" not in str(n.target)})
                tmp.write_bytes(program.to_executorch().buffer)
            except Exception as exc:  # each library raises its own types; all mean this step failed
                raise QuantizeError(f"{RUNTIME} INT8: {step} failed: {type(exc).__name__}: {exc}") from exc
        parity = check_pte(tmp, reference, list(check_inputs) if check_inputs is not None else list(batches[:1]))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExecuTorchInt8(out_path, out_path.stat().st_size, undelegated, parity)


def output_step(reference: torch.fx.GraphModule) -> float | None:
    """The scale of the dequantize that produces the reference's (first) output, if it is one."""
    out = next(n for n in reference.graph.nodes if n.op == "output").args[0]
    node = out[0] if isinstance(out, (tuple, list)) else out
    if isinstance(node, torch.fx.Node) and "dequantize" in str(node.target):
        scale = node.args[1]
        if isinstance(scale, torch.fx.Node) and scale.op == "get_attr":
            scale = getattr(reference, scale.target)
        return float(torch.as_tensor(scale).max())
    return None


def check_pte(path: str | os.PathLike, reference: torch.fx.GraphModule, inputs: Sequence[np.ndarray]) -> ParityReport:
    """The ``.pte`` against its fake-quant PyTorch reference, sample by sample (the rule of
    :func:`edgeprune.quantize.reference.compare_steps`)."""
    from executorch.runtime import Runtime

    with contextlib.redirect_stderr(io.StringIO()):
        method = Runtime.get().load_program(str(path)).load_method("forward")
    got, want = [], []
    with torch.no_grad():
        for batch in inputs:
            for i in range(batch.shape[0]):
                x = torch.from_numpy(np.ascontiguousarray(batch[i:i + 1]))
                got.append(method.execute([x])[0].numpy().copy())
                want.append(reference(x).numpy())
    return compare_steps([np.concatenate(got)], [np.concatenate(want)], [output_step(reference)], path)
