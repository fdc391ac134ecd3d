"""The Budget: what a prune must reach and the accuracy guard, in one vocabulary.

``Budget.parse("macs=0.5", "latency=8ms", max_drop=1)`` reads the same ``METRIC=VALUE`` terms as
recipes and ``--target`` (see :mod:`edgeprune.budget.terms`); ``Budget(macs=0.5)`` is the same
thing in Python. A budget resolves against the unpruned model into absolute :class:`Target`
limits (``Budget.targets``), each priced by a cost model.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch.nn as nn

from edgeprune.budget.costs import BytesCost, CostModel, MacsCost, ParamsCost, Target, price
from edgeprune.budget.memory import FlashCost, SramCost
from edgeprune.budget.terms import LATENCY_METRICS, Term, parse_terms
from edgeprune.errors import BudgetError

_COSTS = ("macs", "params", "bytes", "latency_ms", "speedup", "ram", "flash")
_TERM_FIELD = {"macs": "macs", "params": "params", "size": "bytes", "sparsity": "sparsity",
               "latency": "latency_ms", "speedup": "speedup", "ram": "ram", "flash": "flash"}


@dataclass(frozen=True)
class Budget:
    """What a prune must reach. Give one or more targets; all must be met.

    A value <= 1 is a fraction of the original model's cost (``macs=0.5``: half the MACs, 2x
    fewer); a value > 1 is absolute (MACs, parameter count, bytes).

    Attributes:
        macs: MACs of one forward pass at the example input.
        params: parameter count.
        bytes: bytes of the saved weights.
        sparsity: fraction of the pruned tensors' weights zeroed (weight kinds).
        latency_ms: latency in milliseconds on ``runtime`` at ``threads``.
        speedup: latency of the original divided by this (``speedup=2``: twice as fast).
        max_drop: accuracy points (of ``evaluate``) the prune may lose; with fine-tuning, recovery
            works to meet it, and a prune still outside it raises ``BudgetError``.
        runtime: where latency is measured (``"onnxruntime"``).
        threads: the runtime's thread count.
        latency_model: a ``CostModel`` that predicts latency; ``edgeprune.prune`` builds one from a
            latency table measured on ``runtime`` when it is not given.
        ram: the TensorFlow Lite Micro arena in bytes (peak SRAM of activations, scratch and the
            interpreter's records), planned on the arena predicted from the traced graph
            (``edgeprune.targets.sram``) and judged by TFLM on the deployed file.
        flash: the deployed ``.tflite`` bytes plus ``runtime_flash`` (the runtime's code).
        precision: what will be deployed, ``"float32"`` or ``"int8"``: the arena and flash are
            priced at that precision, and a latency target is planned on a table timed with that
            precision's kernels and measured on the INT8 files (``--quantize int8`` sets it). At
            int8 ``speedup`` is the pruned INT8 file's over the dense INT8 file's (the quantize-only
            baseline), both on ``runtime``; ``latency_ms`` is the pruned INT8 file's.
        runtime_flash: bytes of flash the runtime's code takes beside the model (a stated
            allowance, not a measurement; see ``edgeprune.targets.devices``).

    Example:
        >>> Budget.parse("macs=0.5", "speedup=2x", max_drop=1).describe()
        'macs<=0.5x, speedup=2, max_drop=1, on onnxruntime at 2 thread(s)'
    """

    macs: float | None = None
    params: float | None = None
    bytes: float | None = None
    latency_ms: float | None = None
    speedup: float | None = None
    max_drop: float | None = None
    latency_model: CostModel | None = None
    sparsity: float | None = None
    runtime: str = "onnxruntime"
    threads: int = 2
    ram: float | None = None
    flash: float | None = None
    precision: str = "float32"
    runtime_flash: float = 0.0

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "int8"):
            raise BudgetError(f"Budget.precision must be 'float32' or 'int8', got {self.precision!r}")
        for name in (*_COSTS, "max_drop", "sparsity"):
            value = getattr(self, name)
            if value is not None and not value > 0 and not (name == "max_drop" and value == 0):
                raise BudgetError(f"Budget.{name} must be positive, got {value}")
        if self.speedup is not None and self.speedup < 1:
            raise BudgetError(f"Budget.speedup must be >= 1 (2 means twice as fast), got {self.speedup}")
        if self.sparsity is not None and not self.sparsity < 1:
            raise BudgetError(f"Budget.sparsity is a fraction of weights zeroed below 1, got {self.sparsity}")
        if self.threads < 1:
            raise BudgetError(f"Budget.threads must be >= 1, got {self.threads}")

    @classmethod
    def parse(cls, *terms: str | Iterable[str], max_drop: float | None = None, **fields: Any) -> Budget:
        """A budget from ``METRIC=VALUE`` terms (``"macs=0.5"``, ``"size=4MB"``, ``"latency=8ms"``,
        ``"speedup=2x"``, ``"sparsity=0.9"``), as recipes and ``--target`` write them.

        Raises:
            BudgetSyntaxError: a term does not parse, or a metric is given twice.
        """
        texts = [t for term in terms for t in ([term] if isinstance(term, str) else term)]
        return cls.from_terms(parse_terms(texts), max_drop=max_drop, **fields)

    @classmethod
    def from_terms(cls, terms: Iterable[Term], max_drop: float | None = None, **fields: Any) -> Budget:
        """A budget from parsed terms (``latency=0.5``, half the original's latency, is ``speedup=2``)."""
        values: dict[str, float] = {}
        for t in terms:
            if t.metric == "latency" and t.relative:
                values["speedup"] = 1 / t.value
            else:
                values[_TERM_FIELD[t.metric]] = t.value
        return cls(**values, max_drop=max_drop, **fields)

    @property
    def has_cost(self) -> bool:
        """Whether any cost target is set (not only ``max_drop`` or ``sparsity``)."""
        return any(getattr(self, n) is not None for n in _COSTS)

    @property
    def has_latency(self) -> bool:
        return self.latency_ms is not None or self.speedup is not None

    def with_latency_model(self, latency_model: CostModel) -> Budget:
        return replace(self, latency_model=latency_model)

    def targets(self, model: nn.Module, example_inputs: Any) -> list[Target]:
        """The targets as absolute limits, priced against ``model`` (the unpruned original).

        Returns:
            One :class:`Target` per cost the budget names (empty when only ``max_drop`` is set).

        Raises:
            BudgetError: a latency target without a latency model.
        """
        if self.has_latency and self.latency_model is None:
            raise BudgetError("a latency_ms or speedup budget needs latency_model= (a CostModel that predicts "
                              "latency, e.g. from edgeprune.targets); edgeprune.prune builds one on "
                              f"{self.runtime!r} when it is missing")
        wanted: list[tuple[str, CostModel, float, bool]] = []  # name, model, value, value is a divisor
        for name, cm in (("macs", MacsCost()), ("params", ParamsCost()), ("bytes", BytesCost()),
                         ("ram", SramCost(self.precision)), ("flash", FlashCost(self.precision, self.runtime_flash))):
            if getattr(self, name) is not None:
                wanted.append((name, cm, float(getattr(self, name)), False))
        if self.latency_ms is not None:
            wanted.append(("latency_ms", self.latency_model, float(self.latency_ms), False))
        if self.speedup is not None:
            wanted.append(("speedup", self.latency_model, float(self.speedup), True))
        out = []
        for name, cm, value, divisor in wanted:
            original = price(cm, model, example_inputs, [])
            if divisor:
                limit = original / value
            elif name == "latency_ms":
                limit = value  # milliseconds, never a fraction
            else:
                limit = value * original if value <= 1 else value
            out.append(Target(name, cm, limit, original))
        return out

    def latency_limit(self, original_ms: float) -> float:
        """The latency (ms) a pruned model must measure at or below, given the original's measured latency."""
        if not self.has_latency:
            raise BudgetError("this budget has no latency target")
        limits = [self.latency_ms] if self.latency_ms is not None else []
        if self.speedup is not None:
            limits.append(original_ms / self.speedup)
        return min(limits)

    def describe(self) -> str:
        """A short human form, e.g. ``"macs<=0.5x, max_drop=1.0"``."""
        parts = []
        for name in ("macs", "params", "bytes", "ram", "flash", "sparsity", "latency_ms", "speedup", "max_drop"):
            v = getattr(self, name)
            if v is not None:
                plain = name in ("max_drop", "latency_ms", "speedup", "sparsity") or v > 1
                parts.append(f"{name}={v:g}" if plain else f"{name}<={v:g}x")
        if self.has_latency:
            parts.append(f"on {self.runtime} at {self.threads} thread(s)")
        if self.ram is not None or self.flash is not None:
            parts.append(f"{self.precision} on tflm" + (f" (+{self.runtime_flash:,.0f} B runtime code)"
                                                       if self.runtime_flash else ""))
        return ", ".join(parts) or "no target"


__all__ = ["Budget", "LATENCY_METRICS"]
