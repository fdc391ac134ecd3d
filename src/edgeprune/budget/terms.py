"""The budget vocabulary: what a prune must reach, written ``METRIC=VALUE`` everywhere (Python, recipes, CLI).

==========================  ==============================================================
``macs=0.5``                MACs at most 0.5x the original (a fraction below 1 is relative)
``macs=120M``               MACs at most 120 million (a count with k/M/G, or above 1)
``params=0.5``, ``params=2M``  parameters, relative or absolute, likewise
``size=4MB``, ``size=0.25``    bytes of the weights (MB = 10^6, MiB = 2^20), or a fraction
``sparsity=0.9``            fraction of weights zeroed (``--kind weights``)
``latency=8ms``             latency measured on the budget's runtime at its thread count
``speedup=2x``              measured latency at most 1/2 of the original (likewise; ``latency=2x`` too)
``ram=64KB``, ``ram=0.5``   the TFLite Micro arena (peak SRAM) of the deployed artifact, bytes or a fraction
``flash=256KB``             the deployed artifact's bytes plus the runtime code allowance (``--device``)
==========================  ==============================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgeprune.errors import BudgetError


class BudgetSyntaxError(BudgetError, ValueError):
    """A budget term does not parse (unknown metric, bad number or unit, out of range)."""

METRICS = ("macs", "params", "size", "sparsity", "latency", "speedup", "ram", "flash")
LATENCY_METRICS = ("latency", "speedup")
_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_BYTE_SUFFIX = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_TIME_SUFFIX = {"ms": 1.0, "us": 1e-3, "s": 1e3}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(e[+-]?\d+)?([a-z]*)"


@dataclass(frozen=True)
class Term:
    """One term as the user wrote it: ``metric`` at most ``value`` (relative to the original when ``relative``).

    Attributes:
        metric: one of ``macs``, ``params``, ``size``, ``sparsity``, ``latency``, ``speedup``.
        value: a fraction of the original (``relative``), a count, bytes, milliseconds, a
            sparsity in (0, 1), or a speedup factor above 1.
        relative: ``value`` is a fraction of the original model's figure.
        text: the target as the user wrote it.
    """

    metric: str
    value: float
    relative: bool
    text: str

    def limit_for(self, original: float) -> float:
        """The absolute figure the pruned model must not exceed, given the original's figure."""
        if self.metric == "speedup":
            return original / self.value
        return self.value * original if self.relative else self.value

    def describe(self) -> str:
        """A phrase for reports, e.g. ``MACs <= 0.5x original``."""
        names = {"macs": "MACs", "params": "parameters", "size": "weight bytes", "sparsity": "sparsity",
                 "latency": "latency", "speedup": "speedup", "ram": "TFLM arena", "flash": "flash"}
        if self.metric == "sparsity":
            return f"sparsity of the pruned weight tensors >= {self.value:g}"
        if self.metric == "speedup":
            return f"measured latency <= original / {self.value:g}"
        if self.relative:
            return f"{names[self.metric]} <= {self.value:g}x original"
        if self.metric == "latency":
            return f"latency <= {self.value:.3g} ms"
        unit = " bytes" if self.metric in ("size", "ram", "flash") else ""
        return f"{names[self.metric]} <= {self.value:,.0f}{unit}"


def parse_term(text: str) -> Term:
    """Parse one ``METRIC=VALUE`` target.

    Args:
        text: e.g. ``"macs=0.5"``, ``"size=4MB"``, ``"sparsity=0.9"``, ``"speedup=2x"``.

    Returns:
        The :class:`Target`.

    Raises:
        BadInputError: unknown metric, a value that does not parse, or one out of range; the
            message names the target and what was expected.

    Example:
        >>> parse_term("size=4MB").value
        4000000.0
        >>> parse_term("macs=0.5").relative
        True
    """
    if not isinstance(text, str) or "=" not in text:
        raise BudgetSyntaxError(f"target {text!r} is not METRIC=VALUE (e.g. macs=0.5, size=4MB, speedup=2x)")
    metric, _, raw = text.partition("=")
    metric, raw = metric.strip().lower(), raw.strip().lower().replace(" ", "").replace("_", "")
    if metric == "latency" and raw.endswith("x"):  # "latency=2x" reads as a speed-up (DESIGN.md's spelling)
        metric = "speedup"
    if metric not in METRICS:
        raise BudgetSyntaxError(f"target {text!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    parse = {"macs": _count, "params": _count, "size": _bytes, "sparsity": _sparsity,
             "latency": _latency, "speedup": _speedup, "ram": _bytes, "flash": _bytes}[metric]
    try:
        value, relative = parse(raw)
    except ValueError as exc:
        raise BudgetSyntaxError(f"target {text!r}: {exc}") from None
    return Term(metric, value, relative, text.strip())


def parse_terms(texts: list[str] | tuple[str, ...]) -> list[Term]:
    """Parse several targets; a metric may appear once."""
    targets = [parse_term(t) for t in texts]
    seen: set[str] = set()
    for t in targets:
        if t.metric in seen:
            raise BudgetSyntaxError(f"target metric {t.metric!r} is given twice")
        seen.add(t.metric)
    return targets


def _split(raw: str, suffixes: dict[str, float]) -> tuple[float, str]:
    match = re.fullmatch(_NUMBER, raw)
    if not match:
        raise ValueError(f"{raw!r} is not a number with an optional unit")
    number, suffix = float(match.group(1) + (match.group(2) or "")), match.group(3)
    if suffix not in suffixes:
        raise ValueError(f"unknown unit {suffix!r}; use one of {', '.join(s or '(none)' for s in suffixes)}")
    return number, suffix


def _count(raw: str) -> tuple[float, bool]:
    number, suffix = _split(raw, _COUNT_SUFFIX)
    if number <= 0:
        raise ValueError("must be positive")
    if suffix == "" and number < 1:
        return number, True
    if suffix == "" and number == 1:
        raise ValueError("1 would keep everything; give a fraction below 1 or an absolute count like 120M")
    return number * _COUNT_SUFFIX[suffix], False


def _bytes(raw: str) -> tuple[float, bool]:
    number, suffix = _split(raw, {"": 1, **_BYTE_SUFFIX})
    if number <= 0:
        raise ValueError("must be positive")
    if suffix == "":
        if number < 1:
            return number, True
        raise ValueError("give a unit (e.g. 4MB, 512KiB) or a fraction below 1")
    return number * _BYTE_SUFFIX[suffix], False


def _sparsity(raw: str) -> tuple[float, bool]:
    number, _ = _split(raw, {"": 1})
    if not 0 < number < 1:
        raise ValueError("sparsity is a fraction of weights zeroed, strictly between 0 and 1")
    return number, False


def _latency(raw: str) -> tuple[float, bool]:
    number, suffix = _split(raw, {"": 1, **_TIME_SUFFIX})
    if number <= 0:
        raise ValueError("must be positive")
    if suffix == "":
        if number < 1:
            return number, True
        raise ValueError("give a unit (e.g. 8ms) or a fraction below 1")
    return number * _TIME_SUFFIX[suffix], False


def _speedup(raw: str) -> tuple[float, bool]:
    number, _ = _split(raw, {"": 1, "x": 1})
    if number <= 1:
        raise ValueError("a speedup is a factor above 1, e.g. 2x")
    return number, True
