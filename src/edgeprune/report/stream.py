"""The report's stream section (``stream.json`` from ``edgeprune stream``): the score over time with the
threshold, the labelled events and the detections, the real-time verdict and a table of detections.

Plain inline SVG, like the microcontroller bars beside it.
"""
from __future__ import annotations

import html
from typing import Any

_W, _H, _LEFT, _TOP = 720, 220, 48, 12  # plot box: x from _LEFT to _W - 8, y from _TOP to _H - 36


def stream_section(s: dict[str, Any] | None) -> str:
    """The HTML section for a stream result (empty when the run was not streamed)."""
    if not s:
        return ""
    m, lat = s["metrics"], s["latency_ms"]
    simulated = "a SIMULATED stream" if s.get("simulated") else "a recorded stream"
    verdict = "real time" if s["realtime"] else "NOT real time"
    caption = (f"{s['artifact']} run by {s['runtime']} on {s['seconds']:.0f} s of {s['task']} ({simulated}), "
               f"{s['windows']} windows of {s['window_ms']:.0f} ms every {s['hop_ms']:.0f} ms in time order"
               f"{', paced at the real rate' if s.get('paced') else ''}. Grey: the fault score (the logit margin) "
               f"at the moment each window is complete; dashed: the threshold ({s['threshold']:g}); red bands: "
               f"labelled fault episodes; green: detections (runs of flagged windows, raised at the first). "
               f"{m['events']} labelled events, {len(s['detections'])} detections: event recall "
               f"{100 * m['event_recall']:.1f}%, precision {100 * m['event_precision']:.1f}%, F1 "
               f"{100 * m['event_f1']:.1f}%, window AUC {_percent(m['auc'])}. Latency per window p50 "
               f"{lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms against the {s['hop_ms']:.0f} ms hop: {verdict}"
               f"{' (this host; a microcontroller is slower)' if s['runtime'] == 'tflm' else ''}.")
    run = s.get("run_metric")
    if run:
        caption += f" The run's own {run['metric']} of the same file: {run['value']:.2f}."
    return (f"<section><h2>Stream</h2><figure>{_plot(s)}</figure><p class=caption>{html.escape(caption)}</p>"
            f"{_table(s)}</section>")


def _plot(s: dict[str, Any]) -> str:
    times = [start / s["fs"] + s["window_ms"] / 1000.0 for start in s["starts"]]  # when each window is complete
    scores = s["scores"]
    lo, hi = min(min(scores), s["threshold"]), max(max(scores), s["threshold"])
    span, t_end = (hi - lo) or 1.0, max(s["seconds"], times[-1] if times else 1.0)

    def x(t: float) -> float:
        return _LEFT + (_W - 8 - _LEFT) * t / t_end

    def y(v: float) -> float:
        return _TOP + (_H - 36 - _TOP) * (hi - v) / span

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' font-family='sans-serif' "
           f"font-size='11'>"]
    for a, b in s.get("events", []):
        out.append(f"<rect x='{x(a):.1f}' y='{_TOP}' width='{max(x(b) - x(a), 1):.1f}' height='{_H - 36 - _TOP}' "
                   f"fill='#f4c7c3'/>")
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, scores))
    out.append(f"<polyline points='{points}' fill='none' stroke='#777' stroke-width='1'/>")
    out.append(f"<line x1='{_LEFT}' x2='{_W - 8}' y1='{y(s['threshold']):.1f}' y2='{y(s['threshold']):.1f}' "
               f"stroke='#333' stroke-dasharray='4 3'/>")
    for d in s["detections"]:
        out.append(f"<rect x='{x(d['raised_s']):.1f}' y='{_H - 32}' width='{max(x(d['end_s']) - x(d['raised_s']), 2):.1f}'"
                   f" height='6' fill='#2a7'/><path d='M{x(d['raised_s']):.1f},{_H - 34} l-4,-6 h8 z' fill='#2a7'/>")
    out.append(f"<line x1='{_LEFT}' x2='{_W - 8}' y1='{_H - 36}' y2='{_H - 36}' stroke='#999'/>")
    for k in range(6):
        t = t_end * k / 5
        out.append(f"<text x='{x(t):.1f}' y='{_H - 12}' text-anchor='middle'>{t:.0f} s</text>")
    for v in (lo, s["threshold"], hi):
        out.append(f"<text x='{_LEFT - 4}' y='{y(v) + 4:.1f}' text-anchor='end'>{v:.1f}</text>")
    out.append("</svg>")
    return "".join(out)


def _table(s: dict[str, Any], limit: int = 12) -> str:
    labels = s.get("labels") or []
    rows = []
    for d in s["detections"][:limit]:
        hit = any(labels[d["first"]:d["last"] + 1]) if labels else None
        rows.append(f"<tr><td>{d['raised_s']:.2f} s</td><td>{d['end_s']:.2f} s</td><td>{d['last'] - d['first'] + 1}"
                    f"</td><td>{d['peak']:.2f}</td><td>{'' if hit is None else ('fault' if hit else 'false alarm')}"
                    f"</td></tr>")
    more = len(s["detections"]) - limit
    tail = f"<p class=caption>and {more} more in stream.json</p>" if more > 0 else ""
    return ("<table><tr><th>raised</th><th>last window</th><th>windows</th><th>peak score</th><th>labelled</th></tr>"
            + "".join(rows) + "</table>" + tail) if rows else "<p class=caption>No detections.</p>"


def _percent(value: float | None) -> str:
    """A fraction as a percentage; "n/a" where it is undefined (AUC on a stretch with one class only)."""
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
