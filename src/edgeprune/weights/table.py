"""Per-layer sparsity, as plain rows and as a rich table for the command line."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from edgeprune.surgery.masks import masks_of
from edgeprune.weights.config import DEFAULT_LAYER_TYPES

if TYPE_CHECKING:  # rich is only needed to render
    from rich.table import Table

__all__ = ["sparsity_table", "sparsity_totals", "render_sparsity_table"]


def sparsity_table(model: nn.Module, layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES,
                   extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per layer weight (and per masked or ``extra`` tensor), counting zeros as they are.

    Works on masked and finalized models alike: a masked value reads as zero.

    Args:
        model: the model (read only).
        layer_types: modules whose ``weight`` gets a row.
        extra: further tensor names to list.

    Returns:
        Rows ``{"tensor", "module", "shape", "numel", "nonzero", "sparsity", "masked"}`` in
        registration order.
    """
    masked = masks_of(model)
    wanted = set(masked) | set(extra)
    rows = []
    for module_name, module in model.named_modules():
        attrs = []
        if isinstance(module, layer_types) and isinstance(getattr(module, "weight", None), torch.Tensor):
            attrs.append("weight")
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if hasattr(module, "parametrizations"):
            own += list(module.parametrizations.keys())
        for attr in own:
            full = f"{module_name}.{attr}" if module_name else attr
            if full in wanted and attr not in attrs:
                attrs.append(attr)
        for attr in attrs:
            full = f"{module_name}.{attr}" if module_name else attr
            t = getattr(module, attr).detach()
            nonzero = int(torch.count_nonzero(t))
            rows.append({"tensor": full, "module": type(module).__name__.removeprefix("Parametrized"),
                         "shape": list(t.shape), "numel": t.numel(), "nonzero": nonzero,
                         "sparsity": 1.0 - nonzero / t.numel() if t.numel() else 0.0,
                         "masked": full in masked})
    return rows


def sparsity_totals(model: nn.Module, layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES,
                    extra: tuple[str, ...] = ()) -> dict[str, float | int]:
    """Totals over :func:`sparsity_table`'s rows.

    Args:
        model: the model.
        layer_types: as in :func:`sparsity_table`.
        extra: as in :func:`sparsity_table`.

    Returns:
        ``{"total", "nonzero", "sparsity_overall", "compression"}`` where compression is
        total / nonzero (the "x fewer nonzero weights" figure).
    """
    rows = sparsity_table(model, layer_types, extra)
    total = sum(r["numel"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    return {"total": total, "nonzero": nonzero,
            "sparsity_overall": 1.0 - nonzero / total if total else 0.0,
            "compression": total / nonzero if nonzero else float("inf")}


def render_sparsity_table(rows: list[dict[str, Any]], title: str = "Weight sparsity") -> Table:
    """A rich table of :func:`sparsity_table` rows, with a total row.

    Args:
        rows: from :func:`sparsity_table`.
        title: the table title.

    Returns:
        A ``rich.table.Table`` (print it with ``rich.console.Console().print``).
    """
    from rich.table import Table

    table = Table(title=title)
    for header, justify in [("tensor", "left"), ("type", "left"), ("shape", "left"), ("values", "right"),
                            ("nonzero", "right"), ("sparsity", "right"), ("masked", "center")]:
        table.add_column(header, justify=justify)
    for r in rows:
        table.add_row(r["tensor"], r["module"], "x".join(map(str, r["shape"])), f"{r['numel']:,}",
                      f"{r['nonzero']:,}", f"{r['sparsity']:.1%}", "yes" if r["masked"] else "")
    total = sum(r["numel"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    table.add_section()
    table.add_row("total", "", "", f"{total:,}", f"{nonzero:,}",
                  f"{1 - nonzero / total:.1%}" if total else "-", "")
    return table
