"""Hardware-aware pruning: a latency budget on a target, allocated by measured latency and verified there.

* :func:`allocate` — kept counts on the fast steps of the target's staircase that keep the most
  importance per millisecond (NetAdapt / HALP style greedy), never predicted above the target;
* :func:`prune_to_latency` — allocate, measure the pruned model on ONNX Runtime, tighten, repeat;
* :func:`check_plan` — a plan's predicted latency on the target, with warnings when it will not pay.

The latency model itself (tables, predictor) is ``edgeprune.targets``. See ``docs/hardware.md``.
"""
from edgeprune.latency_aware.allocate import Allocation, allocate
from edgeprune.latency_aware.check import OffStep, PlanCheck, check_plan
from edgeprune.latency_aware.search import Attempt, LatencyBudget, LatencyResult, MeasureConfig, prune_to_latency

__all__ = ["Allocation", "Attempt", "LatencyBudget", "LatencyResult", "MeasureConfig", "OffStep", "PlanCheck",
           "allocate", "check_plan", "prune_to_latency"]
