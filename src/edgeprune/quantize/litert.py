"""LiteRT static INT8: litert-torch's PT2E quantizer, with the residual adds it misses annotated.

``torch.export`` -> ``prepare_pt2e`` with ``litert_torch``'s ``PT2EQuantizer`` (symmetric, int8,
weights per channel, activations per tensor with a histogram observer) -> the calibration batches
-> ``convert_pt2e(fold_quantize=False)`` -> ``litert_torch.convert(..., quant_config=...)``. The
file's inputs and outputs are int8: feed ``round(x / scale) + zero_point`` with the input's
quantization parameters and read ``(q - zero_point) * scale``.

The fix on our side: the package's add annotator finds adds by their source function
(``operator.add``, ``torch.add``, ``operator.iadd``), and torchvision's ``out += identity`` exports
as ``aten.add_.Tensor`` with no source function, so every residual add stayed float (12 dequantize
+ 8 quantize ops in resnet18, float arena, slower). :class:`ResidualAddQuantizer` annotates every
tensor-tensor ``aten.add``/``aten.add_`` the package left bare with the specs its own add annotator
uses (and a ReLU right after it as the fused output, as its ``add_relu`` does), and a global
average pool exported as ``aten.mean.dim``, which it also leaves float. It annotates ``max_pool2d``
to share its input's scale but not ``max_pool1d``: a bare 1-d pool got its own output scale, which
the converter writes as an int8-to-int8 ``QUANTIZE`` before the pool, a full copy of the map in the
arena, that XNNPACK requantizes with a multiplier of 1/256 resolution, so the file drifted from
its reference (60.9% of a 1-d CNN's outputs within one step); ours shares the scale as for 2-d.

Fake-quant reference: the ``convert_pt2e`` module itself, run in PyTorch. It holds the model's ops
in float with ``quantize_per_tensor``/``dequantize`` (per channel for weights) at the scales the
observers chose: exactly what the converter turns into int8 kernels. The check is the one of
:mod:`edgeprune.quantize.reference`, on the dequantized int8 output.
"""
from __future__ import annotations

import contextlib
import io
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeprune.quantize.calibration import check_batches
from edgeprune.quantize.errors import QuantizeError, require
from edgeprune.quantize.reference import ParityReport, compare_steps

RUNTIME = "LiteRT"


@dataclass
class LiteRTInt8:
    """What :func:`quantize_litert` wrote: the file, its bytes, its ops, the fake-quant check."""

    path: Path
    bytes: int
    ops: dict[str, int]
    float_ops: list[str]
    parity: ParityReport


def _quantizer_class():
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    class ResidualAddQuantizer(PT2EQuantizer):
        """litert-torch's PT2E quantizer, plus the tensor-tensor adds (with a following ReLU) and the
        global-average-pool means its annotators miss."""

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            act_in, act_out = get_input_act_qspec(self.global_config), get_output_act_qspec(self.global_config)
            adds = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)
            relus = (torch.ops.aten.relu.default, torch.ops.aten.relu_.default)
            pools = (torch.ops.aten.max_pool1d.default,)
            for node in list(model.graph.nodes):
                if node.op != "call_function" or "quantization_annotation" in node.meta:
                    continue
                if node.target in adds and all(isinstance(a, torch.fx.Node) for a in node.args[:2]):
                    users = list(node.users)
                    # add + relu: one int8 ADD with a fused activation, as the package's add_relu does
                    fused = len(users) == 1 and users[0].target in relus and \
                        "quantization_annotation" not in users[0].meta
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={a: act_in for a in node.args[:2]},
                        output_qspec=None if fused else act_out, _annotated=True)
                    if fused:
                        users[0].meta["quantization_annotation"] = QuantizationAnnotation(
                            output_qspec=act_out, _annotated=True)
                elif node.target in pools and isinstance(node.args[0], torch.fx.Node) and \
                        _output_qspec(node.args[0]) is not None:
                    # a 1-d max-pool shares its input's scale, as the package's max_pool2d annotator does:
                    # a pool with its own output scale becomes a requantizing QUANTIZE before MAX_POOL_2D
                    # (a copy of the full-rate map in the arena) that XNNPACK rounds with a 1/256 multiplier
                    shared = SharedQuantizationSpec(node.args[0])
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={node.args[0]: shared}, output_qspec=shared, _annotated=True)
                elif node.target == torch.ops.aten.mean.dim and isinstance(node.args[0], torch.fx.Node):
                    # a global average pool written as x.mean(...) or adaptive_avg_pool2d(x, 1)
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={node.args[0]: act_in}, output_qspec=act_out, _annotated=True)
            return model

    return ResidualAddQuantizer


def _output_qspec(node: torch.fx.Node):
    """The output quantization spec an annotator gave ``node`` (``None``: it stays float)."""
    annotation = node.meta.get("quantization_annotation")
    return None if annotation is None else annotation.output_qspec


def quantize_litert(model: nn.Module, example: torch.Tensor, batches: Sequence[np.ndarray],
                    out_path: str | os.PathLike, *, check_inputs: Sequence[np.ndarray] | None = None,
                    annotate_residual_adds: bool = True) -> LiteRTInt8:
    """Quantize ``model`` to a static INT8 ``.tflite`` file and check it against its fake-quant reference.

    Args:
        model: the (pruned, fine-tuned) model, one tensor input.
        example: its example input, batch 1 (the file is exported at this shape).
        batches: calibration inputs ``(batch, *sample_shape)``, run sample by sample.
        out_path: the ``.tflite`` to write (beside, then renamed).
        check_inputs: inputs for the check (default: the first calibration batch).
        annotate_residual_adds: our annotations of what the package misses: residual adds, means,
            1-d max-pools (off: the package as it is).

    Returns:
        A :class:`LiteRTInt8`.

    Raises:
        CalibrationDataError: a batch whose sample shape is not the example's.
        QuantizeError: export, quantization or conversion failed (the message names the step).
        QuantizeMismatchError: the file disagrees with its fake-quant reference.
    """
    require("litert_torch", "litert")
    require("ai_edge_litert", "litert")
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    out_path = Path(out_path)
    sample = tuple(example.shape[1:])
    check_batches(batches, "input", ("batch", *sample))
    cls = _quantizer_class() if annotate_residual_adds else PT2EQuantizer
    quantizer = cls().set_global(get_symmetric_quantization_config(is_per_channel=True))
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            step = "torch.export"
            try:
                graph = torch.export.export(model.eval(), (example,)).module()
                step = "prepare_pt2e"
                prepared = prepare_pt2e(graph, quantizer)
                step = "calibration"
                for b in batches:
                    for i in range(b.shape[0]):
                        prepared(torch.from_numpy(b[i:i + 1]))
                step = "convert_pt2e"
                reference = convert_pt2e(prepared, fold_quantize=False)
                step = "litert_torch.convert"
                litert_torch.convert(reference, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)
                                     ).export(str(tmp))
            except Exception as exc:  # each library raises its own types; all mean this step failed
                raise QuantizeError(f"{RUNTIME} INT8: {step} failed: {type(exc).__name__}: {exc}") from exc
            parity = check_tflite(tmp, reference, list(check_inputs) if check_inputs is not None else list(batches[:1]))
        ops, float_ops = tflite_ops(tmp)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return LiteRTInt8(out_path, out_path.stat().st_size, ops, float_ops, parity)


def run_int8_tflite(interp, x: np.ndarray) -> np.ndarray:
    """Run an INT8 ``.tflite`` on float input ``x`` (batch 1): quantize it with the input's
    parameters, dequantize the first output with its own."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    y = interp.get_tensor(out["index"]).copy()
    if np.issubdtype(out["dtype"], np.integer):
        scale, zero = out["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y


def check_tflite(path: str | os.PathLike, reference: nn.Module, inputs: Sequence[np.ndarray]) -> ParityReport:
    """The INT8 ``.tflite`` against its fake-quant PyTorch reference, sample by sample, within one
    step of the output's quantization (the rule of :func:`edgeprune.quantize.reference.compare_steps`)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    out = interp.get_output_details()[0]
    step = float(out["quantization"][0]) or None
    got, want = [], []
    for batch in inputs:
        for i in range(batch.shape[0]):
            x = batch[i:i + 1]
            got.append(run_int8_tflite(interp, x))
            want.append(reference(torch.from_numpy(x)).detach().numpy())
    return compare_steps([np.concatenate(got)], [np.concatenate(want)], [step], path)


def tflite_ops(path: str | os.PathLike) -> tuple[dict[str, int], list[str]]:
    """Op counts of a ``.tflite`` file and the op types that compute in float (a float32 input),
    quantize/dequantize aside."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the one listing of a file's ops the interpreter offers
    counts = Counter(o["op_name"] for o in ops if o["op_name"] != "DELEGATE")
    floats = sorted({o["op_name"] for o in ops if o["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
                     and any(i >= 0 and tensors[i]["dtype"] == np.float32 for i in o["inputs"])})
    return dict(counts), floats
