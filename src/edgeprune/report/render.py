"""Turn a run's ``metrics.json`` into the HTML of its report.

The page layout is ``template.html`` and its style ``report.css`` (package data); this module
only fills the placeholders with escaped HTML fragments and the inline SVG plots.
"""
from __future__ import annotations

import html
import time
from importlib import resources
from string import Template
from typing import Any

from edgeprune.measure.table import human as measure_human
from edgeprune.report import plots
from edgeprune.report.mcu import mcu_section
from edgeprune.report.stream import stream_section

STATUS_TEXT = {"ok": "targets met", "guard_failed": "accuracy guard failed", "target_missed": "target missed"}
RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "litert": "LiteRT", "executorch": "ExecuTorch", "openvino": "OpenVINO"}
ROWS = (  # key, label, unit, lower is better
    ("accuracy", "accuracy", "%", False),
    ("macs", "MACs", "", True),
    ("params", "parameters", "", True),
    ("bytes", "weights (state dict)", "bytes", True),
    ("onnx_bytes", "ONNX file", "bytes", True),
    ("latency_ms", "latency (median)", "ms", True),
)


def render_report(metrics: dict[str, Any]) -> str:
    """The complete HTML page for one run (one self-contained string: CSS and plots inline).

    Args:
        metrics: the content of a run's ``metrics.json``.

    Returns:
        The HTML text.
    """
    import edgeprune

    template = Template(resources.files("edgeprune.report").joinpath("template.html").read_text())
    css = resources.files("edgeprune.report").joinpath("report.css").read_text()
    status = metrics.get("status", "ok")
    recipe = metrics.get("recipe", {})
    macs_svg, lat_svg = plots.tradeoff(metrics, "macs"), plots.tradeoff(metrics, "latency_ms")
    return template.substitute(
        version=html.escape(edgeprune.__version__),
        title=html.escape(f"{metrics.get('model')} \u2192 {recipe.get('kind', 'channels')} pruned"),
        headline=html.escape(headline(metrics)),
        status=html.escape(status),
        status_text=html.escape(STATUS_TEXT.get(status, status)),
        css=css,
        cards=_cards(metrics),
        notes=_notes(metrics.get("notes") or []),
        before_after=_before_after(metrics),
        int8=_int8(metrics) + mcu_section(metrics) + stream_section(metrics.get("stream")),
        checks=_checks(metrics),
        transfer=_transfer(metrics.get("transfer")),
        plot_macs=macs_svg or _empty("accuracy vs MACs needs --data"),
        plot_latency=lat_svg or _empty("accuracy vs latency needs --data and a latency measurement"),
        tradeoff_caption=html.escape(_tradeoff_caption(metrics)),
        plot_layers=plots.kept_per_layer(metrics) or _empty("no layer with weights"),
        layer_table=_layer_table(metrics),
        skipped=_skipped(metrics.get("skipped") or {}),
        sensitivity=_section("Sensitivity", plots.sensitivity(metrics),
                             "The score with only one group pruned, for each group: flat curves are safe to prune."),
        recovery=_section("Recovery", plots.recovery(metrics),
                          "Accuracy after each epoch of fine-tuning. With --max-drop the run keeps fine-tuning, one "
                          "epoch at a time, until the guard is met or --max-epochs is reached, and keeps the best "
                          "weights."),
        recipe=_kv_table("Recipe", {k: v for k, v in recipe.items() if v not in (None, (), [])}),
        timings=_kv_table("Time per step (s)", metrics.get("timings") or {}),
        environment=_environment(metrics),
        files=", ".join(f"<code>{html.escape(f)}</code>" for f in metrics.get("files", [])),
        generated=html.escape(time.strftime("%Y-%m-%d %H:%M")),
    )


def headline(metrics: dict[str, Any]) -> str:
    """One sentence: what the run bought and what it cost."""
    before, after, ratio = metrics.get("before", {}), metrics.get("after", {}), metrics.get("ratios", {})
    parts = []
    if ratio.get("speedup"):
        parts.append(f"{ratio['speedup']:.2f}x faster on {measured_on(metrics)}")
    if ratio.get("macs") is not None:
        parts.append(f"{ratio['macs']:.2f}x the MACs")
    if ratio.get("params") is not None:
        parts.append(f"{ratio['params']:.2f}x the parameters")
    text = ", ".join(parts)
    if before.get("accuracy") is not None and after.get("accuracy") is not None:
        text += (f"; accuracy {before['accuracy']:.2f}% \u2192 {after['accuracy']:.2f}% "
                 f"({after['accuracy'] - before['accuracy']:+.2f} points)")
    return text[:1].upper() + text[1:] + "." if text else "No figures recorded."


def human(value: Any, unit: str) -> str:
    """A figure for people: ``12.3 M``, ``4.21 MiB``, ``0.512 ms``, ``97.90 %``."""
    if value is None:
        return "\u2013"
    if unit == "%":
        return f"{value:.2f} %"
    if unit in ("ms", "bytes") or abs(value) >= 1e3:
        return measure_human(value, unit)
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def _cards(m: dict[str, Any]) -> str:
    before, after, ratio = m.get("before", {}), m.get("after", {}), m.get("ratios", {})
    cards = []
    if ratio.get("speedup"):
        cards.append(("speed-up (measured)", f"{ratio['speedup']:.2f}x",
                      f"{human(before['latency_ms'], 'ms')} \u2192 {human(after['latency_ms'], 'ms')} "
                      f"on {measured_on(m)}", ""))
    if ratio.get("macs") is not None:
        cards.append(("MACs", f"{ratio['macs']:.2f}x", f"{human(before['macs'], '')} \u2192 {human(after['macs'], '')}", ""))
    if ratio.get("onnx_bytes") is not None:
        cards.append(("ONNX file", f"{ratio['onnx_bytes']:.2f}x",
                      f"{human(before['onnx_bytes'], 'bytes')} \u2192 {human(after['onnx_bytes'], 'bytes')}", ""))
    if ratio.get("accuracy_drop") is not None:
        guard = m.get("guard") or {}
        cls = "bad" if guard.get("passed") is False else "good" if guard.get("passed") else ""
        limit = f" (guard {guard['max_drop']:g})" if guard.get("max_drop") is not None else ""
        cards.append(("accuracy change", f"{-ratio['accuracy_drop']:+.2f} pt",
                      f"{human(before['accuracy'], '%')} \u2192 {human(after['accuracy'], '%')}{limit}", cls))
    return "\n".join(f'<div class="card {cls}"><div class="label">{html.escape(label)}</div>'
                     f'<div class="value">{html.escape(value)}</div><div class="detail">{html.escape(detail)}</div></div>'
                     for label, value, detail, cls in cards)


def _before_after(m: dict[str, Any]) -> str:
    before, after = m.get("before", {}), m.get("after", {})
    rows = []
    for key, label, unit, lower_better in ROWS:
        b, a = before.get(key), after.get(key)
        if b is None and a is None:
            continue
        if key == "accuracy":
            label = m.get("metric") or label
        if key == "latency_ms":
            label = f"latency ({measured_on(m)}, median)"
        change, cls = "\u2013", ""
        if b is not None and a is not None:
            if unit == "%":
                change = f"{a - b:+.2f} pt"
                cls = "worse" if a < b - 1e-9 else ""
            elif b:
                change = f"x{a / b:.3f}"
                cls = "better" if (a < b) == lower_better and a != b else "worse" if a != b else ""
        rows.append(f"<tr><td>{html.escape(label)}</td><td class=num>{html.escape(human(b, unit))}</td>"
                    f"<td class=num>{html.escape(human(a, unit))}</td><td class='num {cls}'>{html.escape(change)}</td></tr>")
    if after.get("accuracy_before_finetune") is not None:
        rows.append(f"<tr><td>{html.escape(m.get('metric') or 'accuracy')} right after pruning, before fine-tuning</td>"
                    f"<td class=num>\u2013</td><td class=num>{human(after['accuracy_before_finetune'], '%')}</td>"
                    "<td class=num>\u2013</td></tr>")
    return ("<table><thead><tr><th>figure</th><th class=num>before</th><th class=num>after</th>"
            "<th class=num>after / before</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _int8(m: dict[str, Any]) -> str:
    """Dense FP32 -> pruned FP32 -> pruned INT8, beside dense INT8 (what quantization alone gives)."""
    int8 = m.get("int8")
    if not int8:
        return ""
    from edgeprune.run.int8 import STAGE_LABELS, STAGES

    stages = int8["stages"]
    head = "".join(f"<th class=num>{html.escape(STAGE_LABELS[s])}</th>" for s in STAGES)
    rows = []
    runtime = RUNTIME_NAMES.get(int8.get("runtime", "onnxruntime"), int8.get("runtime", "onnxruntime"))
    lat = int8.get("latency") or {}
    for key, label, unit in (("accuracy", m.get("metric") or "accuracy", "%"), ("bytes", "file", "bytes"),
                             ("latency_ms", f"latency ({runtime}, {lat.get('threads', '?')} threads, median, "
                                            f"interleaved)", "ms"), ("macs", "MACs", "")):
        cells = "".join(f"<td class=num>{html.escape(human(stages[s].get(key), unit))}</td>" for s in STAGES)
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    cal, parity = int8.get("calibration") or {}, int8.get("parity") or {}
    scheme = {"onnxruntime": "Static INT8 (QDQ): uint8 activations, int8 per-channel weights",
              "litert": "Static INT8 (litert-torch PT2E, residual adds annotated): int8 activations per tensor, "
                        "int8 per-channel weights",
              "executorch": "Static INT8 (XNNPACK quantizer, delegated to XNNPACK): int8 activations per tensor, "
                            "int8 per-channel weights"}.get(int8.get("runtime", "onnxruntime"), "Static INT8")
    caption = (f"The INT8 files' accuracy is measured by running each file in {runtime} over the validation "
               f"data; the guard and size/latency targets read {int8['artifact']}. {scheme}, "
               f"calibrated on {cal.get('batches')} batches "
               f"({cal.get('samples')} samples, seed {cal.get('seed')}) of the {cal.get('data')} data. "
               f"Checked against its fake-quant reference (the same graph run unfused): "
               f"{parity.get('within_one_step', 1.0):.1%} of output values within one quantization step, "
               f"at most {parity.get('max_steps', 0):.2f} steps. The four files are timed interleaved.")
    if int8.get("float_ops"):
        caption += f" Left in float (no quantizer rule, no weights): {', '.join(int8['float_ops'])}."
    return (f"<section><h2>INT8</h2><table><thead><tr><th>figure</th>{head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table><p class=caption>{html.escape(caption)}</p></section>")


def _checks(m: dict[str, Any]) -> str:
    rows = []
    for c in m.get("targets") or []:
        unit = {"size": "bytes", "latency": "ms", "speedup": "ms", "sparsity": ""}.get(c["metric"], "")
        fmt = (lambda v: f"{v:.3f}") if c["metric"] == "sparsity" else (lambda v: human(v, unit))
        meaning = c["describe"] + (f" (judged on {c['judged_on']})" if c.get("judged_on") else
                                   f" (measured on {measured_on(m)})" if c["metric"] in ("latency", "speedup") else "")
        rows.append(_check_row(f"target {c['target']}", meaning, fmt(c["limit"]),
                               fmt(c["reached"]) if c["reached"] is not None else "\u2013", c["met"]))
    guard = m.get("guard")
    if guard:
        drop = guard.get("drop")
        meaning = "accuracy may drop at most this many points" + (
            f" (judged on {guard['judged_on']}, run in its runtime)" if guard.get("judged_on") else "")
        rows.append(_check_row("--max-drop", meaning, f"{guard['max_drop']:g} pt",
                               f"{drop:.2f} pt" if drop is not None else "not measured", guard.get("passed")))
    if not rows:
        return "<p class=caption>No targets or guard were set.</p>"
    return ("<table><thead><tr><th>check</th><th>meaning</th><th class=num>limit</th><th class=num>reached</th>"
            "<th>result</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _check_row(name: str, meaning: str, limit: str, reached: str, passed: bool | None) -> str:
    result = ("<span class=pass>\u2713 met</span>" if passed else "<span class=fail>\u2717 missed</span>"
              if passed is False else "not checked")
    return (f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(meaning)}</td>"
            f"<td class=num>{html.escape(limit)}</td><td class=num>{html.escape(reached)}</td><td>{result}</td></tr>")


def _tradeoff_caption(m: dict[str, Any]) -> str:
    text = ("Grey points are one-shot cuts at fixed ratios with the run's allocation, not fine-tuned: they show "
            "how fast accuracy falls as MACs go. ")
    if (m.get("before") or {}).get("latency_ms") is not None:
        text += f"Latency is measured on {measured_on(m)}. "
    if m.get("finetune"):
        ft = m["finetune"]
        text += (f"The arrow is recovery: {ft['epochs']:g} epoch(s) of fine-tuning at learning rate {ft['lr']:g}"
                 + (" with distillation from the original model." if ft.get("distill") else "."))
    return text


def measured_on(m: dict[str, Any]) -> str:
    """What ran the run's before/after latency: ``ONNX Runtime 1.32.0, 2 threads, f32``.

    From the interleaved verdict (``metrics["latency"]``) where the run has one, else from the
    pruned model's profile.
    """
    lat = m.get("latency") or {}
    if not lat:
        prof = (m.get("profiles") or {}).get("after") or {}
        lat = dict(prof.get("latency_onnx") or {})
        env = prof.get("environment") or {}
        lat.setdefault("threads", env.get("threads"))
        if not lat.get("version"):
            lat["version"] = env.get("onnxruntime") or ""
    runtime = RUNTIME_NAMES.get(lat.get("runtime") or "onnxruntime", lat.get("runtime"))
    threads = lat.get("threads")
    parts = [f"{runtime} {lat.get('version') or ''}".strip(),
             f"{threads} thread{'s' if threads != 1 else ''}" if threads else "threads unknown",
             lat.get("precision") or "f32"]
    return ", ".join(parts)


def _transfer(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    rows = []
    for r in t.get("rows", []):
        parity = max((r.get("parity_max_rel") or {"": 0.0}).values())
        cls = "better" if (r.get("speedup") or 0) > 1 else "worse"
        rows.append(f"<tr><td>{html.escape(RUNTIME_NAMES.get(r['runtime'], r['runtime']))}</td><td class=mono>{html.escape(str(r['version']))}</td>"
                    f"<td class=num>{r['threads']}</td><td>{html.escape(str(r['precision']))}</td>"
                    f"<td class=num>{human(r['original_ms'], 'ms')}</td><td class=num>{human(r['pruned_ms'], 'ms')}</td>"
                    f"<td class='num {cls}'>{r['speedup']:.2f}x</td><td class=num>{parity:.1e}</td></tr>")
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in t.get("warnings", []))
    proto = t.get("protocol") or {}
    caption = (f"The original and the pruned model, exported to each runtime's file (checked against PyTorch: "
               f"parity is the largest relative error), timed in one process, interleaved per runtime "
               f"({proto.get('rounds')} rounds of {proto.get('runs')} runs, median).")
    return ("<section><h2>Transfer across runtimes</h2><table><thead><tr><th>runtime</th><th>version</th>"
            "<th class=num>threads</th><th>precision</th><th class=num>original</th><th class=num>pruned</th>"
            "<th class=num>speed-up</th><th class=num>parity (max rel)</th></tr></thead><tbody>" + "".join(rows)
            + f"</tbody></table><p class=caption>{html.escape(caption)}</p>"
            + (f'<div class="notes"><strong>Slow steps</strong><ul>{warnings}</ul></div>' if warnings else "")
            + "</section>")


def _layer_table(m: dict[str, Any]) -> str:
    sparse = (m.get("recipe") or {}).get("kind", "channels") != "channels"
    rows = []
    for row in m.get("layers") or []:
        if sparse:
            cells = (f"{row['weights_before']:,}", f"{row['weights_after']:,}", f"{row['kept_weights']:.0%}")
        else:
            cells = (str(row["units_before"]), str(row["units_after"]), f"{row['kept_units']:.0%}")
        rows.append(f"<tr><td class=mono>{html.escape(row['layer'])}</td><td>{html.escape(row['type'])}</td>"
                    + "".join(f"<td class=num>{c}</td>" for c in cells) + "</tr>")
    what = "nonzero weights" if sparse else "output channels"
    return (f"<table><thead><tr><th>layer</th><th>type</th><th class=num>{what} before</th>"
            f"<th class=num>after</th><th class=num>kept</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _skipped(skipped: dict[str, str]) -> str:
    if not skipped:
        return ""
    rows = "".join(f"<tr><td class=mono>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in skipped.items())
    return (f"<details><summary>{len(skipped)} group(s) left whole, and why</summary>"
            f"<table><thead><tr><th>group</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></details>")


def _section(title: str, svg: str, caption: str) -> str:
    if not svg:
        return ""
    cap = f"<p class=caption>{html.escape(caption)}</p>" if caption else ""
    return f"<section><h2>{html.escape(title)}</h2><figure>{svg}</figure>{cap}</section>"


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<section class="notes"><strong>Notes</strong><ul>{items}</ul></section>'


def _kv_table(title: str, data: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td class=mono>{html.escape(_short(v))}</td></tr>"
                   for k, v in data.items())
    return f"<table><thead><tr><th colspan=2>{html.escape(title)}</th></tr></thead><tbody>{rows}</tbody></table>"


def _environment(m: dict[str, Any]) -> str:
    env = ((m.get("profiles") or {}).get("after") or {}).get("environment") or {}
    if not env:
        return ""
    text = ", ".join(f"{k} {v}" for k, v in env.items())
    return f"<p class=caption>Measured with {html.escape(text)}.</p>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _empty(why: str) -> str:
    return f"<p class=caption>({html.escape(why)})</p>"
