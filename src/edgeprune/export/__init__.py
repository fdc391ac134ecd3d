"""Export and persistence: checked ONNX files, and saved pruned models (safetensors + JSON, no pickle)."""
from edgeprune.export.onnx import ExportError, ExportMismatchError, export_onnx
from edgeprune.export.saving import LoadError, load, save

__all__ = ["ExportError", "ExportMismatchError", "LoadError", "export_onnx", "load", "save"]
