"""Reading an op's arguments the same way whether they came positionally or by keyword."""
from __future__ import annotations

from typing import Any


def arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    if index < len(args):
        return args[index]
    return default


def dim_list(value: Any, ndim: int) -> list[int]:
    """Normalise a ``dim`` argument (int, tuple, list or None for all) to non-negative ints."""
    if value is None:
        return list(range(ndim))
    if isinstance(value, int):
        value = [value]
    return sorted(d % ndim for d in value) if ndim else []
