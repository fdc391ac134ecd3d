"""The fake-quant reference an INT8 ONNX file is checked against, and the check.

The reference is the *same* QDQ graph run by ONNX Runtime with every graph optimisation disabled
(``ORT_DISABLE_ALL``). A QDQ graph is, by the ONNX definition of its two ops, a fake-quant model:
``QuantizeLinear`` computes ``q = saturate(round(x / s) + z)`` and ``DequantizeLinear`` computes
``(q - z) * s``, and every Conv, Gemm or MatMul between them runs in float32 on the dequantized
weights and activations. That is exactly fake quantization with the scales and zero points the
calibrator chose. With optimisations on (how the artifact is deployed and timed), ORT fuses each
``DQ -> Conv -> Q`` into an integer kernel (QLinearConv, U8S8 with int32 accumulation and a fixed-
point requantisation), so the two runs differ only by the integer kernels' rounding: what the check
is for. Why not a PyTorch fake-quant model rebuilt from the graph's scales: it would re-implement
the graph op by op (a second, untested interpreter of the same file) where the unfused graph already
*is* that model; the tests cross-check this reference against ONNX's own pure-numpy reference
evaluator (``onnx.reference``) on small models, so the reference itself is checked.

The check: the INT8 file's outputs are within one quantization step of the reference, the step
being the scale of the QuantizeLinear/DequantizeLinear pair the output leaves through (an output
left in float gets 1% of the reference's largest magnitude). On small graphs every value is (the
tests hold them to that). Each fused integer op may round its requantised output one step away
from float fake-quant, and a deep graph carries such a step on to later ops: measured on random
resnet18 / mobilenet_v2 at 64 px, 0.3% / 1.7% of output values were one step further (at most 2 /
3 steps, mean 0.1 step; FP32 itself is 3.4 / 5.7 steps away). So the check passes when at least
95% of the values are within one step and none is more than 4 steps away. What it catches is
integer kernels that do not compute what the graph says, e.g. U8S8 products that saturate in 16
bits on x86 CPUs without VNNI (the reason ORT has ``reduce_range``): those are off by many steps.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgeprune.quantize.errors import QuantizeMismatchError

STEPS_ALLOWED = 1.0
SHARE_WITHIN = 0.95  # of output values within STEPS_ALLOWED
STEPS_MAX = 4.0  # no value further than this
FLOAT_OUTPUT_RTOL = 0.01


@dataclass(frozen=True)
class ParityReport:
    """How far the INT8 file is from its fake-quant reference.

    Attributes:
        max_abs: largest absolute difference over outputs and check inputs.
        max_steps: the same in quantization steps of the output.
        within_one_step: share of output values within one step of the reference.
        step: the output's quantization step (``None``: the output is float).
        samples: check samples compared.
        top1_agreement: share of samples whose argmax over the last dim agrees (classifiers).
    """

    max_abs: float
    max_steps: float
    within_one_step: float
    step: float | None
    samples: int
    top1_agreement: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def session(path: str | os.PathLike, *, fake_quant: bool = False, threads: int = 1):
    """An ONNX Runtime CPU session: the deployed INT8 kernels, or (``fake_quant``) the reference.

    Args:
        path: the ONNX file.
        fake_quant: disable every graph optimisation, so Q/DQ run as float fake-quant ops.
        threads: intra-op threads.

    Returns:
        An ``onnxruntime.InferenceSession``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if fake_quant
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def output_steps(path: str | os.PathLike) -> list[float | None]:
    """The quantization step of each graph output: the scale of the DequantizeLinear that produces
    it (a scalar scale), or ``None`` when the output is computed in float."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    produced_by = {o: n for n in model.graph.node for o in n.output}
    steps: list[float | None] = []
    for out in model.graph.output:
        node = produced_by.get(out.name)
        scale = None
        if node is not None and node.op_type == "DequantizeLinear":
            tensor = inits.get(node.input[1]) or consts.get(node.input[1])
            if tensor is not None:
                values = numpy_helper.to_array(tensor)
                scale = float(values.max()) if values.size else None
        steps.append(scale)
    return steps


def check_int8(path: str | os.PathLike, inputs: Sequence[np.ndarray], input_name: str, *,
               reference: str | os.PathLike | None = None) -> ParityReport:
    """Check an INT8 QDQ file against its fake-quant reference (see the module docstring).

    Args:
        path: the INT8 file.
        inputs: float32 input batches.
        input_name: the graph input they feed.
        reference: the QDQ file run as fake-quant (default ``path`` itself: what the check is for).

    Returns:
        A :class:`ParityReport`.

    Raises:
        QuantizeMismatchError: an output is more than one quantization step from the reference.
    """
    fast, ref = session(path), session(reference if reference is not None else path, fake_quant=True)
    got: list[list[np.ndarray]] = []
    want: list[list[np.ndarray]] = []
    for batch in inputs:
        got.append(fast.run(None, {input_name: batch}))
        want.append(ref.run(None, {input_name: batch}))
    outputs = len(got[0]) if got else 0
    return compare_steps([np.concatenate([g[k] for g in got]) for k in range(outputs)],
                         [np.concatenate([w[k] for w in want]) for k in range(outputs)], output_steps(path), path)


def compare_steps(got: Sequence[np.ndarray], want: Sequence[np.ndarray], steps: Sequence[float | None],
                  path: str | os.PathLike) -> ParityReport:
    """Compare INT8 outputs with their fake-quant reference in quantization steps (see the module docstring).

    Args:
        got: the INT8 artifact's outputs (dequantized), one array per output, batch first.
        want: the reference's outputs, likewise.
        steps: each output's quantization step (``None``: a float output).
        path: the artifact, for the error message.

    Returns:
        A :class:`ParityReport`.

    Raises:
        QuantizeMismatchError: fewer than 95% of the values within one step, or one beyond 4 steps.
    """
    worst_abs, worst_steps, within, values = 0.0, 0.0, 0, 0
    for g, w, step in zip(got, want, steps):
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        step = step or FLOAT_OUTPUT_RTOL * max(float(np.abs(w).max()), 1e-12)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_steps = max(worst_steps, float(diff.max()) / step)
        # 1e-3 of a step: the reference's float32 dequantize itself rounds (|x| / s up to 255, ~1e-5 relative)
        within += int((diff <= step * (STEPS_ALLOWED + 1e-3)).sum())
        values += diff.size
    samples = int(got[0].shape[0]) if got else 0
    agree = float((got[0].argmax(-1) == want[0].argmax(-1)).mean()) if got and got[0].ndim >= 2 else 1.0
    share = within / values if values else 1.0
    report = ParityReport(worst_abs, worst_steps, share, steps[0] if steps else None, samples, agree)
    if share < SHARE_WITHIN or worst_steps > STEPS_MAX + 1e-3:
        raise QuantizeMismatchError(
            f"the INT8 file {os.fspath(path)!r} differs from its fake-quant reference: {share:.1%} of output "
            f"values within one quantization step (at least {SHARE_WITHIN:.0%} needed), up to {worst_steps:.2f} "
            f"steps (max abs {worst_abs:.3g}; at most {STEPS_MAX:g} allowed)")
    return report
