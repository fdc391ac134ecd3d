"""The latency table of one model on one target, as read from its portable JSON file.

The file is written by ``lut_builder`` (on the host or on the device); this module validates it
and answers one question: how long does layer L take with ``c_in`` input and ``c_out`` output
channels? Measured points lie on the fast steps of each group's staircase; between them the
table interpolates bilinearly, and a count off the fast steps pays the off-step penalty its
family's staircase measured.

Example:
    >>> t = LatencyTable.load("resnet18.json")          # doctest: +SKIP
    >>> t.layer_ms(t.layers[1], 64, 48)                 # doctest: +SKIP
    0.41
"""
from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.targets import lut_builder
from edgeprune.targets.layers import LayerSpec


class TableError(EdgepruneError):
    """A latency table file is malformed, of another version, or for another model or target."""


@dataclass(frozen=True)
class GroupSteps:
    """A group's staircase: its size, the fast step of its kept count, and the counts that were timed."""

    size: int
    step: int
    levels: list[int]
    partitions: int = 1

    def fast_counts(self, minimum: int = 1) -> list[int]:
        """Every kept count on a fast step, from ``minimum`` up, and the full size."""
        out = [c for c in range(self.step, self.size + 1, self.step) if c >= minimum]
        return sorted(set(out) | {self.size})


@dataclass
class _Grid:
    c_in: list[int]
    c_out: list[int]
    ms: dict[tuple[int, int], float]

    def at(self, ci: float, co: float) -> float:
        """Bilinear in (c_in, c_out) between measured points; proportional below the smallest, linear above."""
        return _interp(self.c_in, ci, lambda a: _interp(self.c_out, co, lambda b: self.ms[(a, b)]))


def _interp(axis: list[int], x: float, value) -> float:
    if len(axis) == 1:
        return value(axis[0])
    if x <= axis[0]:
        return value(axis[0]) * x / axis[0]  # below the grid: time shrinks with the channels
    i = min(max(bisect_left(axis, x), 1), len(axis) - 1)
    lo, hi = axis[i - 1], axis[i]
    w = (x - lo) / (hi - lo)
    return value(lo) * (1 - w) + value(hi) * w


@dataclass
class LatencyTable:
    """A parsed latency table (format ``edgeprune.latency_table``, see ``docs/hardware.md``).

    Attributes:
        target: CPU, ISA, runtime and its version, threads and the ``key`` joining them.
        protocol: runs, warmup, statistic, fixed run overhead subtracted from every point.
        model_key: the model (architecture and input shape) the table was built for.
        layers: the timed layers of that model.
        groups: per group its staircase step and timed counts.
        staircase: per op family and channel axis: the sweep, its fast step and off-step penalty.
        measured: whole-model measurements ``{name: {"counts": {group: kept}, "ms": ...}}`` for calibration.
        doc: the JSON document itself (written back unchanged by :meth:`save`, plus new measurements).
    """

    target: dict[str, Any]
    protocol: dict[str, Any]
    model_key: str
    layers: list[LayerSpec]
    groups: dict[str, GroupSteps]
    staircase: dict[str, Any]
    measured: dict[str, dict[str, Any]]
    doc: dict[str, Any] = field(repr=False)
    _grids: dict[str, _Grid] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LatencyTable:
        """Validate and parse a table document.

        Raises:
            TableError: wrong format or version, a missing field, or a layer whose op was not timed.
        """
        if not isinstance(doc, dict) or doc.get("format") != lut_builder.TABLE_FORMAT:
            raise TableError(f"not a latency table (expected 'format': '{lut_builder.TABLE_FORMAT}')")
        if doc.get("version") != lut_builder.FORMAT_VERSION:
            raise TableError(f"latency table version {doc.get('version')!r} is not supported "
                             f"(expected {lut_builder.FORMAT_VERSION})")
        try:
            model = doc["model"]
            layers = [LayerSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["spec"].items()})
                      for entry in model["layers"]]
            groups = {name: GroupSteps(g["size"], g["step"], list(g["levels"]), g.get("partitions", 1))
                      for name, g in model["groups"].items()}
            grids = {}
            for sig, entry in doc["ops"].items():
                ms = {}
                for key, value in entry["points"].items():
                    if value is None:
                        raise TableError(f"op {sig!r} point {key} was never timed (an interrupted build?)")
                    a, b = (int(v) for v in key.split(","))
                    ms[(a, b)] = float(value)
                grids[sig] = _Grid(sorted({a for a, _ in ms}), sorted({b for _, b in ms}), ms)
            table = cls(dict(doc["target"]), dict(doc["protocol"]), model["key"], layers, groups,
                        dict(doc["staircase"]), dict(model.get("measured", {})), doc, grids)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TableError):
                raise
            raise TableError(f"malformed latency table: {type(exc).__name__}: {exc}") from exc
        for layer in layers:
            grid = grids.get(layer.signature)
            if grid is None:
                raise TableError(f"layer {layer.name} ({layer.signature}) has no timed points in the table")
            if len(grid.ms) != len(grid.c_in) * len(grid.c_out):
                raise TableError(f"op {layer.signature!r} is not timed on a full grid")
        return table

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table file; raises :class:`TableError` naming the file when it is not one."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # also not UTF-8, too many digits, deep nesting
            raise TableError(f"cannot read latency table {path}: {str(exc)[:200]}") from exc
        try:
            return cls.from_dict(doc)
        except TableError as exc:
            raise TableError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, with the current whole-model measurements."""
        doc = json.loads(json.dumps(self.doc))
        doc["model"]["measured"] = self.measured
        return doc

    def save(self, path: str | Path) -> None:
        """Write the table (atomically: a temporary file, then a rename)."""
        lut_builder.write_json(self.to_dict(), str(path))

    def check_target(self, threads: int | None = None) -> list[str]:
        """Reasons this table may not describe the machine running now (empty when it matches)."""
        here = lut_builder.target_info(threads if threads is not None else self.target["threads"], self.runtime)
        mine = {**self.target, "runtime_version": self.target.get("runtime_version", self.target.get("onnxruntime"))}
        return [f"{k}: table has {mine.get(k)!r}, this machine {here[k]!r}"
                for k in ("cpu", "runtime_version", "threads", "machine") if mine.get(k) != here[k]]

    @property
    def precision(self) -> str:
        """The kernels the table timed, ``"float32"`` or ``"int8"`` (tables from before int8 ones: float32)."""
        return str(self.target.get("precision", "float32"))

    def require_precision(self, precision: str) -> None:
        """Refuse to describe a model deployed at another precision than the table timed.

        Raises:
            TableError: naming both precisions (an FP32 table for an INT8 run, or the reverse).
        """
        if precision != self.precision:
            raise TableError(f"this latency table timed {self.precision} kernels ({self.target.get('key')}) but the "
                             f"model is deployed as {precision}: build the table with "
                             f"TableConfig(precision={precision!r}) (their staircases differ)")

    @property
    def runtime(self) -> str:
        """The runtime the table was timed on (tables from before other runtimes: ONNX Runtime)."""
        return str(self.target.get("runtime", "onnxruntime"))

    def step(self, family: str, axis: str) -> tuple[int, float]:
        """(fast step, off-step penalty) of ``family`` along ``axis`` ("c_in", "c_out", or "c")."""
        fam = self.staircase[family]
        entry = fam["c"] if "c" in fam else fam[axis]
        return int(entry["step"]), float(entry["penalty"])

    def layer_ms(self, layer: LayerSpec, c_in: int, c_out: int) -> float:
        """Predicted time of ``layer`` (ms, run overhead excluded) with these channel counts."""
        grid = self._grids[layer.signature]
        if layer.depthwise:
            step, penalty = self.step(layer.family, "c")
            ms = grid.at(1, c_out)
            return ms * (penalty if c_out % step and c_out not in grid.c_out else 1.0)
        ms = grid.at(c_in, c_out)
        for axis, c, timed in (("c_in", c_in, grid.c_in), ("c_out", c_out, grid.c_out)):
            step, penalty = self.step(layer.family, axis)
            if c % step and c not in timed:  # off the fast steps and not timed as such
                ms *= penalty
        return ms
