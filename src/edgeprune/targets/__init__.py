"""Latency models of target devices: lookup tables measured on ONNX Runtime, and a predictor.

A table holds, for one model on one target (CPU model, onnxruntime version, threads), the time of
each of its layers over the channel counts pruning can leave, measured on the fast steps of each
layer family's staircase. ``lut_builder`` measures it (also on the device, with onnxruntime and
numpy only); :class:`LatencyPredictor` sums and calibrates it. See ``docs/hardware.md``.

Example:
    >>> import torch, torchvision
    >>> from edgeprune.targets import TableConfig, build_table, LatencyPredictor
    >>> m, x = torchvision.models.resnet18(), torch.randn(1, 3, 96, 96)
    >>> predictor = LatencyPredictor(build_table(m, x, TableConfig(levels=4)))   # doctest: +SKIP
    >>> predictor.dense_ms()                                                      # doctest: +SKIP
    6.1
"""
from edgeprune.targets.allocate import Allocation, allocate
from edgeprune.targets.build import TableConfig, build_table, counts_plan, group_scores, write_ops
from edgeprune.targets.check import OffStep, PlanCheck, check_plan
from edgeprune.targets.layers import LayerSpec, model_key, timed_layers
from edgeprune.targets.measured import Measured, measure_models, measure_onnx
from edgeprune.targets.model import latency_model
from edgeprune.targets.predictor import Calibration, LatencyPredictor, counts_of_plan
from edgeprune.targets.table import GroupSteps, LatencyTable, TableError

__all__ = ["Allocation", "Calibration", "OffStep", "PlanCheck", "allocate", "check_plan", "GroupSteps", "LatencyPredictor", "LatencyTable", "LayerSpec", "Measured", "TableConfig",
           "TableError", "build_table", "counts_of_plan", "counts_plan", "group_scores", "latency_model", "measure_models",
           "measure_onnx",
           "model_key", "timed_layers", "write_ops"]
