"""One parity check for every runtime: an artifact's outputs against PyTorch's.

The figure is the **relative error** of each output, ``max |artifact - torch| / max |torch|``
(the largest difference over the output's own scale, so values near zero do not blow it up), and
an output passes when ``max |artifact - torch| <= atol + rtol * max |torch|``. The named tolerance
:data:`FP32` (``rtol=1e-4``) is what an FP32 artifact of any runtime must meet; the runtimes here
agree with PyTorch to ~2e-6 on the models tested (OpenVINO only with f32 forced: its bf16 default
on AVX-512-BF16 CPUs is off by up to 5e-2). Integer outputs must match exactly.

Inputs checked: the example input and a seeded random input of the same shape (a constant traced
from the example shows on the second), plus a batch of 2 where the artifact has a dynamic batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from edgeprune.runtimes.errors import ExportError, ParityError
from edgeprune.specs import ExampleInputs, eval_mode, random_inputs, split_inputs

PARITY_RTOL = 1e-4


@dataclass(frozen=True)
class Tolerance:
    """An output passes when ``max |artifact - torch| <= atol + rtol * max |torch|``."""

    rtol: float = PARITY_RTOL
    atol: float = 0.0


FP32 = Tolerance()


@dataclass
class ParityReport:
    """What :func:`check_parity` measured: the worst relative error per check input."""

    runtime: str
    max_rel: float = 0.0
    max_abs: float = 0.0
    by_input: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "max_rel": self.max_rel, "max_abs": self.max_abs,
                "by_input": dict(self.by_input)}


def check_parity(session, model: nn.Module, example_inputs: ExampleInputs, *, tol: Tolerance = FP32,
                 seed: int = 0, dynamic_batch: bool = False) -> ParityReport:
    """Run ``session`` and ``model`` on the check inputs and compare every output.

    Args:
        session: an open :class:`edgeprune.runtimes.base.Session` of the artifact.
        model: the PyTorch model it should match (run in eval mode, without gradients).
        example_inputs: the example input; a seeded random one of the same shape is also checked.
        tol: the tolerance (default :data:`FP32`).
        seed: seed of the random input.
        dynamic_batch: also check a batch of 2.

    Returns:
        A :class:`ParityReport`.

    Raises:
        ExportError: the artifact cannot run on the inputs, or gives a different number of outputs.
        ParityError: an output differs beyond ``tol``.
    """
    args, kwargs = split_inputs(example_inputs)
    cases = [("example input", (args, kwargs)), ("random input", random_inputs(example_inputs, seed=seed))]
    if dynamic_batch:
        (a2, k2) = cases[1][1]
        cases.append(("batch of 2", (tuple(torch.cat([x, y]) for x, y in zip(args, a2)),
                                     {k: torch.cat([kwargs[k], k2[k]]) for k in kwargs})))
    report = ParityReport(session.runtime)
    with eval_mode(model), torch.no_grad():
        for label, (a, k) in cases:
            expected = [t.detach().cpu().numpy() for t in flat_tensors(model(*a, **k))]
            try:
                got = session.run(session.inputs_from(a, k))
            except ExportError:
                raise
            except Exception as exc:  # a runtime raises its own types; all mean "does not run"
                raise ExportError(f"{session.runtime} cannot run {session.path}: {type(exc).__name__}: {exc}") from exc
            worst, worst_abs = compare(expected, got, label, tol, names=session.output_names,
                                       runtime=session.runtime)
            report.by_input[label] = worst
            report.max_rel, report.max_abs = max(report.max_rel, worst), max(report.max_abs, worst_abs)
    return report


def compare(expected: list[np.ndarray], got: list[np.ndarray], label: str, tol: Tolerance = FP32, *,
            names: list[str] | None = None, runtime: str = "onnxruntime") -> tuple[float, float]:
    """Compare outputs one by one (see the module docstring for the rule).

    Args:
        expected: PyTorch's outputs, flattened, as arrays.
        got: the artifact's outputs, in the same order.
        label: the check input's name, for the error.
        tol: the tolerance.
        names: the artifact's output names, for the error.
        runtime: the runtime's name, for the error.

    Returns:
        ``(worst relative error, worst absolute difference)`` over the outputs.

    Raises:
        ExportError: the counts differ.
        ParityError: an output differs in shape, exact values (integers) or beyond ``tol``.
    """
    if len(expected) != len(got):
        raise ExportError(f"{runtime}: the artifact has {len(got)} outputs, PyTorch gave {len(expected)} tensors")
    worst = worst_abs = 0.0
    for i, (ref, out) in enumerate(zip(expected, got)):
        name = names[i] if names and i < len(names) else f"output_{i}"
        out = np.asarray(out)
        if ref.shape != out.shape:
            raise ParityError(i, name, label, float("inf"), float("inf"),
                              f" (shape {tuple(out.shape)} vs {tuple(ref.shape)})", runtime=runtime)
        if not np.issubdtype(ref.dtype, np.floating):
            if not np.array_equal(ref, out):
                diff = float(np.abs(ref.astype(np.float64) - out.astype(np.float64)).max())
                raise ParityError(i, name, label, diff, float("inf"),
                                  f" ({int((ref != out).sum())} of {ref.size} exact values differ)", runtime=runtime)
            continue
        max_abs, max_rel, scale = relative_error(out, ref)
        if not max_abs <= tol.atol + tol.rtol * scale:  # also catches NaN on one side only (inf)
            raise ParityError(i, name, label, max_abs, max_rel,
                              f" (allowed rtol={tol.rtol:g} of max |torch| {scale:.3g}, atol={tol.atol:g})",
                              runtime=runtime)
        worst, worst_abs = max(worst, max_rel), max(worst_abs, max_abs)
    return worst, worst_abs


def relative_error(got: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """``(max abs difference, relative error, max |ref|)``; NaN in both places counts as equal.

    Example:
        >>> relative_error(np.array([1.0, 2.001]), np.array([1.0, 2.0]))[1] == 0.001 / 2.0
        True
    """
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    if ref64.size == 0:
        return 0.0, 0.0, 0.0
    both_nan = np.isnan(ref64) & np.isnan(got64)
    diff = np.where(both_nan, 0.0, np.abs(got64 - ref64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = float(np.abs(np.nan_to_num(ref64, nan=0.0, posinf=0.0, neginf=0.0)).max())
    max_abs = float(diff.max())
    return max_abs, max_abs / max(scale, np.finfo(np.float64).tiny), scale


def flat_tensors(output) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, tuple, list or dict), flattened in order."""
    leaves, _ = tree_flatten(output)
    return [t for t in leaves if isinstance(t, torch.Tensor)]
