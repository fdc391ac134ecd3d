"""Measure a model: parameters, MACs, bytes, latency on ONNX Runtime and PyTorch, peak memory.

Each figure has its own module (``params``, ``macs``, ``size``, ``latency``, ``memory``);
:func:`profile` gathers them in a :class:`Profile`, and :func:`compare` lines two up.
"""
from edgeprune.measure.compare import Row, compare
from edgeprune.measure.latency import LatencyStats
from edgeprune.measure.macs import MacCount, count_macs
from edgeprune.measure.memory import MemoryReport, measure_memory
from edgeprune.measure.params import ParamCount, count_params
from edgeprune.measure.profile import Profile, profile
from edgeprune.measure.size import SizeReport

__all__ = ["LatencyStats", "MacCount", "MemoryReport", "ParamCount", "Profile", "Row", "SizeReport",
           "compare", "count_macs", "count_params", "measure_memory", "profile"]
