"""Rich tables of a profile and of a comparison, for the command line."""
from __future__ import annotations

from rich.table import Table

from edgeprune.measure.compare import Row, figures
from edgeprune.measure.profile import Profile


def human(value: float | None, unit: str) -> str:
    """Format a figure: ``1.81 G`` for counts, ``44.7 MiB`` for bytes, ``12.3 ms`` for times."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "bytes":
        for suffix, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {suffix}"
        return f"{int(value)} B"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{int(value)}"


def profile_table(p: Profile) -> Table:
    """A two-column table (figure, value) of one profile, with its caveats as a caption.

    Args:
        p: the profile.

    Returns:
        A ``rich.table.Table``.
    """
    threads = p.environment.get("threads")
    table = Table(title=f"{p.name}  input {p.input_shapes}  threads {threads}",
                  caption="\n".join(p.notes) or None)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for metric, unit, value in figures(p):
        if value is not None:
            table.add_row(metric, human(value, unit))
    for kind, macs in p.macs.by_kind.items():
        if macs:
            table.add_row(f"  MACs {kind}", human(macs, ""))
    if p.memory is not None:
        table.add_row("peak memory (weights+input+activations)", human(p.memory.peak_bytes, "bytes"))
    for lat in (p.latency_onnx, p.latency_runtime):  # what ran each latency figure
        if lat is not None:
            table.add_row(f"  {lat.runtime}", f"{lat.version} / {lat.threads} threads / {lat.precision}")
    return table


def comparison_table(rows: list[Row], title: str = "before / after") -> Table:
    """A table of :func:`edgeprune.measure.compare.compare` rows with the ratio after/before.

    Args:
        rows: the comparison.
        title: the table title.

    Returns:
        A ``rich.table.Table``.
    """
    table = Table(title=title)
    for name, justify in (("figure", "left"), ("before", "right"), ("after", "right"), ("after/before", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        ratio = f"x{row.ratio:.3f}" if row.ratio is not None else "-"
        table.add_row(row.metric, human(row.before, row.unit), human(row.after, row.unit), ratio)
    return table
