"""Errors of quantization, each naming its cause (the op, the input, the output)."""
from __future__ import annotations

from edgeprune.errors import EdgepruneError


class QuantizeError(EdgepruneError):
    """A model could not be quantized; the message says why. A user can act on it (exit code 2)."""

    exit_code = 2


class CalibrationDataError(QuantizeError, ValueError):
    """Calibration data does not fit the model: wrong shape or dtype, empty, or too few samples.
    The message names the model input and both shapes."""


class UnsupportedOpError(QuantizeError):
    """The runtime's quantizer cannot quantize an op of the model (it would stay in float).

    Attributes:
        op_type: the ONNX op type, e.g. ``"GRU"``.
        node: the node's name in the graph.
    """

    def __init__(self, op_type: str, node: str, runtime: str, detail: str = "") -> None:
        self.op_type, self.node, self.runtime = op_type, node, runtime
        super().__init__(f"{runtime} cannot quantize op {op_type} (node {node!r}): its weights would stay in "
                         f"float{detail}. Replace the layer, or run without --quantize")


class QuantizeMismatchError(QuantizeError):
    """The INT8 artifact disagrees with its fake-quant reference by more than its tolerance: the
    runtime's integer kernels do not compute what the quantized graph says (not the user's fault)."""

    exit_code = 1


class MissingExtraError(QuantizeError):
    """The runtime's toolchain is not installed; the message gives the pip command that adds it."""


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` naming ``pip install 'edgeprune[extra]'`` unless ``module`` imports.

    Args:
        module: the import name (``litert_torch``, ``executorch``).
        extra: the edgeprune extra that installs it.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"INT8 for this runtime needs {module}, which is not installed: "
                                f"pip install 'edgeprune[{extra}]'")
