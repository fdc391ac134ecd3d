"""Predicted latency of a (pruned) model on a target: the sum of its layers' table entries, calibrated.

    predicted_ms = scale * sum(layer_ms(layer, c_in, c_out) for each timed layer) + offset_ms

``offset_ms`` is the measured constant of everything the table does not time (adds, pooling,
layout reorders, the run itself); ``scale`` absorbs what single-op graphs get wrong about a
layer inside a model (warm caches, fused reorders). Both are fitted on whole models measured on the
target (the unpruned model and a few pruned ones), weighting each point by 1/measured so the fit
minimises relative error. With one point the offset is 0 and the scale is measured / sum: the
untimed work is taken to shrink with the layers (adds, reorders and pooling do scale with channels).

The predictor is a ``CostModel`` (``edgeprune.budget``): ``cost(model, example_inputs)`` reads the
channel counts of the model's layers (a meta-device copy is enough) and never runs it.

Example:
    >>> p = LatencyPredictor(LatencyTable.load("resnet18.json"))     # doctest: +SKIP
    >>> p.predict_counts({"conv1": 48})                              # doctest: +SKIP
    11.2
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch.nn as nn

from edgeprune.plan import Plan
from edgeprune.targets.layers import LayerSpec
from edgeprune.targets.table import LatencyTable, TableError


@dataclass(frozen=True)
class Calibration:
    """``predicted = scale * table_sum + offset_ms``, fitted on ``points`` (table sum, measured ms)."""

    scale: float = 1.0
    offset_ms: float = 0.0
    points: tuple[tuple[float, float], ...] = ()

    @classmethod
    def fit(cls, points: list[tuple[float, float]]) -> Calibration:
        """Least squares on relative error; one point fixes the scale only; none leaves the raw sum."""
        pts = tuple((float(x), float(y)) for x, y in points)
        if not pts:
            return cls()
        if len(pts) == 1 or len({round(x, 6) for x, _ in pts}) == 1:
            x, y = pts[0]
            return cls(y / x, 0.0, pts)
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        rows = np.stack([xs / ys, 1.0 / ys], axis=1)  # (a*x + b) / y = 1
        (a, b), *_ = np.linalg.lstsq(rows, np.ones_like(ys), rcond=None)
        if a <= 0:  # a degenerate fit (noise on nearly equal points): proportional through the points
            return cls(float(np.median(ys / xs)), 0.0, pts)
        return cls(float(a), float(b), pts)

    def errors(self) -> list[float]:
        """Relative error of the fit at each of its points."""
        return [(self.scale * x + self.offset_ms) / y - 1 for x, y in self.points]


class LatencyPredictor:
    """Predicts the latency of a model pruned from the table's model, on the table's target.

    Args:
        table: the target's latency table for this model.

    Attributes:
        name, on_meta: the ``CostModel`` protocol's fields.
        calibration: the current :class:`Calibration` (refitted by :meth:`add_measurement`).
    """

    name = "latency_ms"
    on_meta = True

    def __init__(self, table: LatencyTable) -> None:
        self.table = table
        self.calibration = Calibration()
        self.refit()

    # --- channel counts --------------------------------------------------------------------------

    def layer_counts(self, counts: Mapping[str, int], dropped: Collection[str] = ()) -> list[tuple[LayerSpec, int, int]]:
        """(layer, c_in, c_out) of every timed layer when each group keeps ``counts[group]`` units;
        the layers inside the residual blocks ``dropped`` (module paths) are gone."""
        return [(layer, *layer_channels(layer, counts)) for layer in self.table.layers
                if not any(layer.name.startswith(b + ".") for b in dropped)]

    def raw_ms(self, counts: Mapping[str, int], dropped: Collection[str] = ()) -> float:
        """Sum of the table's layer times (uncalibrated) at these group counts, without ``dropped`` blocks."""
        return sum(self.table.layer_ms(layer, ci, co) for layer, ci, co in self.layer_counts(counts, dropped))

    def macs(self, counts: Mapping[str, int], dropped: Collection[str] = ()) -> int:
        """Multiply-accumulates of the timed layers at these group counts, without ``dropped`` blocks."""
        return sum(layer.macs(ci, co) for layer, ci, co in self.layer_counts(counts, dropped))

    def layer_ms(self, counts: Mapping[str, int]) -> dict[str, float]:
        """Calibrated time of each timed layer (``scale`` applied, no offset) at these counts."""
        s = self.calibration.scale
        return {layer.name: s * self.table.layer_ms(layer, ci, co) for layer, ci, co in self.layer_counts(counts)}

    # --- predictions ---------------------------------------------------------------------------

    def predict_counts(self, counts: Mapping[str, int], dropped: Collection[str] = ()) -> float:
        """Predicted latency (ms) when each group keeps ``counts[group]`` units (others: all) and the
        residual blocks ``dropped`` are gone (their untimed work is left to the calibration)."""
        return self.calibration.scale * self.raw_ms(counts, dropped) + self.calibration.offset_ms

    def predict_plan(self, plan: Plan | None) -> float:
        """Predicted latency (ms) of the table's model after ``plan`` (structured groups and blocks)."""
        if plan is None:
            return self.predict_counts({})
        return self.predict_counts(counts_of_plan(plan), plan.blocks)

    def predict_model(self, model: nn.Module) -> float:
        """Predicted latency (ms) of ``model``, a pruned copy of the table's model (read from its modules)."""
        return self.predict_counts(self.counts_of_model(model), self.dropped_of_model(model))

    def cost(self, model: nn.Module, example_inputs=None) -> float:
        """``CostModel.cost``: :meth:`predict_model` (the input shape is the table's)."""
        return self.predict_model(model)

    def dense_ms(self) -> float:
        """Predicted latency of the unpruned model."""
        return self.predict_counts({})

    def dropped_of_model(self, model: nn.Module) -> list[str]:
        """The residual blocks of the table's model that ``model`` has replaced by the identity."""
        dropped = set()
        for layer in self.table.layers:
            parts = layer.name.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                try:
                    if isinstance(model.get_submodule(prefix), nn.Identity):
                        dropped.add(prefix)
                        break
                except AttributeError:
                    break
        return sorted(dropped)

    def counts_of_model(self, model: nn.Module) -> dict[str, int]:
        """The kept count of each group, read from the channel counts of ``model``'s layers (those
        inside a block the model dropped are skipped)."""
        counts: dict[str, int] = {}
        dropped = self.dropped_of_model(model)
        for layer in self.table.layers:
            if any(layer.name.startswith(b + ".") for b in dropped):
                continue
            try:
                m = model.get_submodule(layer.name)
                c_in, c_out = ((m.in_features, m.out_features) if isinstance(m, nn.Linear)
                               else (m.in_channels, m.out_channels))
            except AttributeError as exc:
                raise TableError(f"the table's layer {layer.name!r} ({layer.signature}) is not a layer of this "
                                 f"{type(model).__name__}: the table was built for another model "
                                 f"({self.table.model_key})") from exc
            if layer.out_group:
                counts[layer.out_group] = int(c_out)
            if layer.in_group and not layer.depthwise:
                counts[layer.in_group] = int(c_in)
        return counts

    # --- calibration ------------------------------------------------------------------------------

    def add_measurement(self, name: str, counts: Mapping[str, int], measured_ms: float) -> Calibration:
        """Record a whole-model measurement on the target (kept in the table) and refit the calibration."""
        self.table.measured[name] = {"counts": {k: int(v) for k, v in counts.items()}, "ms": float(measured_ms)}
        return self.refit()

    def refit(self) -> Calibration:
        """Fit the calibration on every whole-model measurement the table holds."""
        points = [(self.raw_ms(m["counts"]), float(m["ms"])) for m in self.table.measured.values()]
        self.calibration = Calibration.fit(points)
        return self.calibration


def layer_channels(layer: LayerSpec, counts: Mapping[str, int]) -> tuple[int, int]:
    """(c_in, c_out) of ``layer`` when each group keeps ``counts[group]`` units (absent: unpruned)."""
    co = counts.get(layer.out_group, layer.c_out) if layer.out_group else layer.c_out
    if layer.depthwise:
        return int(co), int(co)
    return int(counts.get(layer.in_group, layer.c_in) if layer.in_group else layer.c_in), int(co)


def counts_of_plan(plan: Plan) -> dict[str, int]:
    """``{group: kept units}`` of a structured plan (groups it does not name keep everything)."""
    return {g.name: g.size - len(g.remove) for g in plan.groups}
