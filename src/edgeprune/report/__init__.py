"""The run report: one self-contained HTML file (CSS and SVG plots inline) read from ``metrics.json``.

    from edgeprune.report import write_report
    write_report("runs/demo")          # (re)writes runs/demo/report.html

The layout lives in the package data files ``template.html`` and ``report.css``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgeprune.report.render import render_report

REPORT_FILE = "report.html"


def write_report(run_dir: str | os.PathLike) -> Path:
    """Render ``run_dir/metrics.json`` into ``run_dir/report.html`` (written atomically).

    Args:
        run_dir: a run directory (or one being staged) holding ``metrics.json``.

    Returns:
        The report's path.

    Raises:
        FileNotFoundError: there is no ``metrics.json``.
        ValueError: it is not the metrics of an edgeprune run.
    """
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if not isinstance(metrics, dict) or metrics.get("format") != "edgeprune.run":
        raise ValueError(f"{run_dir / 'metrics.json'} is not the metrics of an edgeprune run")
    for key in ("transfer", "stream"):  # written by ``edgeprune transfer`` / ``edgeprune stream``
        extra = run_dir / f"{key}.json"
        if extra.exists():
            metrics = {**metrics, key: json.loads(extra.read_text())}
    path = run_dir / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(render_report(metrics), encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["REPORT_FILE", "render_report", "write_report"]
