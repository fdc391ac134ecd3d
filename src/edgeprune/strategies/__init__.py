"""Strategies decide how many units each group loses; each returns removals that become a Plan.

Two layers:

* allocations (``edgeprune.strategies.session.ALLOCATIONS``): ``uniform`` and ``global`` turn
  scores and a ratio into removals;
* strategies (``PRESETS``, typed configs implementing :class:`Strategy`): ``OneShot``,
  ``Sensitivity``, ``Iterative``, ``Guarded`` and ``LatencyAware`` propose plans against a
  ``Budget``, with data, evaluation and fine-tuning, and never change the model they are given.
  ``edgeprune.prune(strategy="sensitivity")`` takes a preset by name, or a config object.
"""
from edgeprune.strategies.base import Strategy, lowest, make_plan, removable
from edgeprune.strategies.global_ import global_ranking
from edgeprune.strategies.guarded import Guarded
from edgeprune.strategies.iterative import Iterative
from edgeprune.strategies.latency import LatencyAware
from edgeprune.strategies.oneshot import OneShot
from edgeprune.schedule import scheduled_amount, step_amounts
from edgeprune.strategies.sensitivity import Curves, Sensitivity, sensitivity_curves
from edgeprune.strategies.latency_search import LatencySearch
from edgeprune.strategies.sram import PeakFirst
from edgeprune.strategies.uniform import uniform

PRESETS = {
    "uniform": OneShot("uniform"),
    "global": OneShot("global"),
    "sensitivity": Sensitivity(),
    "sensitivity-loss": Sensitivity(signal="loss", name="sensitivity-loss"),  # needs data=, not evaluate=
    "iterative": Iterative(),
    "guarded": Guarded(),
    "latency": LatencyAware(),
    # residual blocks dropped whole beside the channel cuts, where they buy more ms per value (latency targets)
    "latency-depth": LatencyAware(search=LatencySearch(depth=True), name="latency-depth"),
    "sram": PeakFirst(),  # cuts the layers that set the TFLite Micro arena's peak first (ram= budgets)
}

__all__ = ["Curves", "Guarded", "Iterative", "LatencyAware", "OneShot", "PRESETS", "PeakFirst", "Sensitivity", "Strategy", "global_ranking",
           "lowest", "make_plan", "removable", "scheduled_amount", "sensitivity_curves", "step_amounts",
           "uniform"]
