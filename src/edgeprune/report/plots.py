"""The report's figures, drawn with matplotlib and returned as inline SVG text.

Inline SVG keeps ``report.html`` one self-contained file whose text stays searchable and sharp
at any zoom. Each function takes plain data from ``metrics.json`` and returns ``""`` when there
is nothing to draw.
"""
from __future__ import annotations

import io
import re
from typing import Any

ORIGINAL, PRUNED, TUNED, TRIAL = "#6b7280", "#f59e0b", "#2563eb", "#94a3b8"
INT8_PRUNED, INT8_DENSE = "#059669", "#a855f7"
_STYLE = {"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9, "axes.spines.top": False,
          "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb", "grid.linewidth": 0.6,
          "axes.edgecolor": "#9ca3af", "axes.titlesize": 10, "axes.titleweight": "bold", "legend.frameon": False}


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG lives inside HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _figure(width: float, height: float):
    # A bare Figure, not pyplot: no global figure registry, no GUI backend, nothing to close.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def tradeoff(metrics: dict[str, Any], x: str) -> str:
    """Accuracy against MACs (``x="macs"``) or latency (``x="latency_ms"``).

    Points: the original, the pruned model before and after fine-tuning, and (for MACs) every
    candidate the search evaluated without fine-tuning.
    """
    import matplotlib

    before, after = metrics.get("before", {}), metrics.get("after", {})
    if before.get("accuracy") is None or before.get(x) is None or after.get(x) is None:
        return ""
    scale, unit = (1e6, "MMACs") if x == "macs" else (1.0, "ms, ONNX Runtime median")
    max_drop = (metrics.get("guard") or {}).get("max_drop")
    points: list[tuple[float, float, str, str, float]] = []  # x, accuracy, colour, label, size
    if x == "macs":
        for t in (metrics.get("search") or {}).get("trials", []):
            if t.get("accuracy") is not None:
                points.append((t["macs"] / scale, t["accuracy"], TRIAL, "candidates (not fine-tuned)", 5))
    for src, key, color, label in ((before, "accuracy", ORIGINAL, "original"),
                                   (after, "accuracy_before_finetune", PRUNED, "pruned, before fine-tuning"),
                                   (after, "accuracy", TUNED, "pruned + fine-tuned" if metrics.get("finetune")
                                    else "pruned (final)")):
        if src.get(key) is not None:
            points.append((src[x] / scale, src[key], color, label, 8))
    stages = (metrics.get("int8") or {}).get("stages") or {}
    for stage, color, label in (("pruned_int8", INT8_PRUNED, "pruned INT8 (file in ORT)"),
                                ("dense_int8", INT8_DENSE, "dense INT8 (quantize only)")):
        s = stages.get(stage) or {}
        if s.get("accuracy") is not None and s.get(x) is not None:
            points.append((s[x] / scale, s["accuracy"], color, label, 8))
    # Against MACs the whole curve shows how accuracy collapses; against latency the axis zooms on
    # what matters (original, final, guard) and points far below are pinned to the bottom edge.
    top = max([before["accuracy"], after.get("accuracy") or 0.0] + [p[1] for p in points if p[2] != TRIAL])
    low = min([before["accuracy"] - (max_drop or 0.0), after.get("accuracy") or top]
              + [p[1] for p in points if p[2] in (INT8_PRUNED, INT8_DENSE)])
    if x == "macs":
        low = min([low] + [p[1] for p in points])
    span = max(top - low, 1.0)
    margin = 0.08 * span if x == "macs" else 1.5 * span
    y_min, y_max = max(0.0, low - margin), min(100.0, top + 0.25 * span) if top < 100 else 100.5
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure(4.6, 3.2)
        seen: set[str] = set()
        below = 0
        for px, py, color, label, size in points:
            pinned = py < y_min
            below += pinned and color == TRIAL
            ax.plot([px], [y_min if pinned else py], "v" if pinned else "o", color=color, markersize=size,
                    label=None if label in seen else label, zorder=2 if color == TRIAL else 3, clip_on=False)
            seen.add(label)
            if pinned and color != TRIAL:
                ax.annotate(f"{py:.1f}%", (px, y_min), xytext=(6, 4), textcoords="offset points", fontsize=7,
                            color=color)
        if after.get("accuracy_before_finetune") is not None and after.get("accuracy") is not None:
            ax.annotate("", xy=(after[x] / scale, after["accuracy"]),
                        xytext=(after[x] / scale, max(after["accuracy_before_finetune"], y_min)),
                        arrowprops={"arrowstyle": "->", "color": TUNED, "lw": 1, "shrinkA": 4, "shrinkB": 5})
        if max_drop is not None:
            ax.axhline(before["accuracy"] - max_drop, color="#dc2626", lw=0.8, ls="--", label=f"guard (-{max_drop:g} pt)")
        ax.set_ylim(y_min, y_max)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{'MACs' if x == 'macs' else 'latency'} ({unit})")
        ax.set_ylabel(f"{metrics.get('metric') or 'accuracy'} (%)")
        ax.set_title("accuracy vs " + ("MACs" if x == "macs" else "latency"), loc="left")
        if below:
            ax.text(0.02, 0.97, f"\u25bc {below} candidates below the axis", transform=ax.transAxes, ha="left",
                    va="top", fontsize=7, color="#64748b")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7)
        return _svg(fig)


def kept_per_layer(metrics: dict[str, Any]) -> str:
    """Horizontal bars: the fraction of output units (channels) or nonzero weights each layer kept."""
    import matplotlib

    layers = metrics.get("layers") or []
    if not layers:
        return ""
    sparse = (metrics.get("recipe") or {}).get("kind", "channels") != "channels"
    key = "kept_weights" if sparse else "kept_units"
    names = [row["layer"] for row in layers]
    values = [row[key] for row in layers]
    height = max(1.6, 0.24 * len(layers) + 0.8)
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure(4.6, height)
        ax.barh(range(len(names)), [1.0] * len(names), color="#eef2f7", height=0.7)
        bars = ax.barh(range(len(names)), values, color=TUNED, height=0.7)
        for bar, row in zip(bars, layers):
            label = (f"{row['weights_after']:,}/{row['weights_before']:,}" if sparse
                     else f"{row['units_after']}/{row['units_before']}")
            ax.text(1.01, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=7, color="#374151")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.18)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.grid(False, axis="y")
        ax.set_xlabel("fraction of nonzero weights kept" if sparse else "fraction of output channels kept")
        ax.set_title("kept per layer", loc="left")
        return _svg(fig)


def sensitivity(metrics: dict[str, Any]) -> str:
    """One curve per group: the score when only that group is pruned, against the ratio pruned.

    Reads ``metrics["sensitivity"]`` = ``{"metric": ..., "curves": {group: [[ratio, score], ...]}}``.
    """
    import matplotlib

    data = metrics.get("sensitivity") or {}
    curves = data.get("curves") if isinstance(data, dict) else None
    if not curves:
        return ""
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure(6.4, 3.4)
        for name, points in curves.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, lw=1.2, label=name)
        ax.set_xlabel("fraction of the group's units pruned")
        ax.set_ylabel(f"{data.get('metric') or metrics.get('metric') or 'accuracy'} (%)")
        ax.set_title("sensitivity per group", loc="left")
        ax.legend(fontsize=7, ncol=2, loc="lower left")
        return _svg(fig)


def recovery(metrics: dict[str, Any]) -> str:
    """Accuracy after each epoch of fine-tuning, against the original's and the guard's line.

    Reads ``metrics["finetune"]["curve"]`` (``[[epochs, accuracy], ...]``), ``metrics["before"]["accuracy"]``
    and ``metrics["guard"]["max_drop"]``; empty when the run did not work to a guard.
    """
    import matplotlib

    curve = (metrics.get("finetune") or {}).get("curve") or []
    base = (metrics.get("before") or {}).get("accuracy")
    if not curve or base is None:
        return ""
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure(6.4, 2.8)
        xs, ys = zip(*curve)
        ax.plot(xs, ys, marker="o", markersize=4, lw=1.4, label="pruned, after fine-tuning")
        ax.axhline(base, color="#555", lw=1, ls="--", label="original")
        max_drop = (metrics.get("guard") or {}).get("max_drop")
        if max_drop is not None:
            ax.axhline(base - max_drop, color="#c0392b", lw=1, ls=":", label=f"guard (-{max_drop:g} points)")
        ax.set_xlabel("epochs of fine-tuning")
        ax.set_ylabel(f"{metrics.get('metric') or 'accuracy'} (%)")
        ax.set_title("recovery", loc="left")
        ax.legend(fontsize=7, loc="lower right")
        return _svg(fig)
