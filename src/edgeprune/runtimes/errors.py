"""The errors every runtime plug-in raises: a missing extra, an unknown name, a file that cannot be
written or run, an artifact that disagrees with PyTorch (one type for every runtime).

Nothing heavy is imported here, so ``edgeprune.export.onnx`` and the plug-ins share these types.
"""
from __future__ import annotations

from edgeprune.errors import EdgepruneError


class RuntimeMissingError(EdgepruneError, ImportError):
    """The runtime's optional package is not installed; the message names the pip command."""


class UnknownRuntimeError(EdgepruneError, ValueError):
    """No runtime (or artifact format) of that name; the message lists the known ones."""


class ExportError(EdgepruneError, RuntimeError):
    """The model could not be exported to a runtime's file, or the file does not run there."""


class ParityError(ExportError):
    """An artifact runs but its outputs differ from PyTorch's beyond the tolerance.

    One type for every runtime (ONNX Runtime, LiteRT, ExecuTorch, OpenVINO).

    Attributes:
        output_index: position of the first offending output in the flattened outputs.
        output_name: its name in the artifact (or ``output_<i>``).
        input_label: which check input showed it ("example input", "random input", "batch of 2").
        max_abs: largest absolute difference on that output.
        max_rel: that difference over the largest magnitude of PyTorch's output.
        runtime: the runtime that ran the artifact.
    """

    def __init__(self, output_index: int, output_name: str, input_label: str,
                 max_abs: float, max_rel: float, detail: str = "", runtime: str = "onnxruntime") -> None:
        self.output_index = output_index
        self.output_name = output_name
        self.input_label = input_label
        self.max_abs = max_abs
        self.max_rel = max_rel
        self.runtime = runtime
        super().__init__(
            f"{_LABEL.get(runtime, runtime)} output {output_index} ({output_name!r}) differs from PyTorch on the "
            f"{input_label}: max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g}{detail}")


_LABEL = {"onnxruntime": "ONNX", "litert": "LiteRT", "executorch": "ExecuTorch", "openvino": "OpenVINO", "tflm": "TFLite Micro"}
