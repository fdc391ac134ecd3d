"""The report's microcontroller section: flash and SRAM of the dense and the pruned file against the limits.

Bars are plain inline SVG (no plotting library): one row per figure, the dense file's bar, the
pruned file's bar, and the device's limit as a line (the budget where no device was named).
"""
from __future__ import annotations

import html
from typing import Any


def mcu_section(m: dict[str, Any]) -> str:
    """The HTML section for ``metrics["mcu"]`` (empty when the run had no microcontroller step)."""
    mcu = m.get("mcu")
    if not mcu:
        return ""
    dense, pruned = mcu["stages"]["dense"], mcu["stages"]["pruned"]
    device = mcu.get("device") or {}
    limits = {c["metric"]: c["limit"] for c in m.get("targets", []) if c["metric"] in ("ram", "flash")}
    rows = [("SRAM (TFLM arena)", dense["arena"]["total"], pruned["arena"]["total"], device.get("sram") or limits.get("ram")),
            ("flash (file + runtime allowance)", dense["flash"], pruned["flash"], device.get("flash") or limits.get("flash"))]
    svg = "".join(_bars(*row) for row in rows)
    where = f"{device['name']} ({device['description']})" if device else "the run's budget"
    caption = (f"{mcu['artifact']} ({mcu['precision']}) measured in TensorFlow Lite Micro: the arena from its "
               f"allocator's report, flash as the file's bytes plus {mcu['runtime_flash']:,} bytes stated for the "
               f"runtime's code. The line is the limit of {where}. Predicted arena (what the plan was made on): "
               f"dense {dense['predicted_arena']:,} B, pruned {pruned['predicted_arena']:,} B.")
    if pruned.get("accuracy") is not None:
        caption += f" The pruned file's {m.get('metric') or 'score'} run in TFLM: {pruned['accuracy']:.2f}."
    return (f"<section><h2>Microcontroller</h2><figure><svg xmlns='http://www.w3.org/2000/svg' width='640' "
            f"height='{len(rows) * 80}' font-family='sans-serif' font-size='12'>{svg}</svg></figure>"
            f"<p class=caption>{html.escape(caption)}</p></section>")


def _bars(label: str, dense: float, pruned: float, limit: float | None) -> str:
    top = 0 if label.startswith("SRAM") else 80
    scale = 440 / max(dense, pruned, limit or 0, 1)
    out = [f"<text x='0' y='{top + 14}'>{html.escape(label)}</text>"]
    for i, (name, value, color) in enumerate((("dense", dense, "#bbb"), ("pruned", pruned, "#2a7"))):
        y = top + 22 + i * 24
        out.append(f"<text x='0' y='{y + 14}'>{name}</text><rect x='70' y='{y}' width='{value * scale:.1f}' "
                   f"height='18' fill='{color}'/><text x='{76 + value * scale:.1f}' y='{y + 14}'>{value:,.0f} B</text>")
    if limit:
        x = 70 + limit * scale
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top + 18}' y2='{top + 72}' stroke='#c33' "
                   f"stroke-width='2'/><text x='{x + 3:.1f}' y='{top + 28}' fill='#c33'>limit {limit:,.0f} B</text>")
    return "".join(out)
