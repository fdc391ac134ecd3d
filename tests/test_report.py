"""The report: one self-contained HTML file whose plots are inline SVG, written from metrics.json."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from edgeprune.report import render_report, write_report
from edgeprune.report.render import headline


def metrics(**overrides):
    """A run's metrics as the pipeline writes them (the keys the report reads)."""
    base = {
        "format": "edgeprune.run", "version": 1, "status": "ok", "exit_code": 0, "model": "mnist", "data": "mnist",
        "metric": "top-1 accuracy",
        "recipe": {"model": "mnist", "kind": "channels", "target": ["macs=0.5"], "epochs": 2, "max_drop": 1.0},
        "before": {"accuracy": 98.7, "macs": 29_000_000, "params": 316_000, "bytes": 1_270_000,
                   "onnx_bytes": 1_290_000, "latency_ms": 0.61},
        "after": {"accuracy": 98.1, "accuracy_before_finetune": 40.0, "macs": 14_000_000, "params": 150_000,
                  "bytes": 600_000, "onnx_bytes": 620_000, "latency_ms": 0.30},
        "ratios": {"macs": 0.48, "params": 0.47, "onnx_bytes": 0.48, "speedup": 2.03, "accuracy_drop": 0.6},
        "targets": [{"target": "macs=0.5", "metric": "macs", "describe": "MACs <= 0.5x original",
                     "limit": 14_500_000, "reached": 14_000_000, "met": True}],
        "guard": {"max_drop": 1.0, "drop": 0.6, "passed": True},
        "search": {"ratio": 0.3, "method": "bisection on the uniform ratio",
                   "trials": [{"ratio": r, "macs": 29e6 * (1 - r) ** 2, "params": 0, "size": 0, "met": r >= 0.3,
                               "accuracy": 98.7 - 150 * r * r} for r in (0.1, 0.2, 0.3, 0.6, 0.95)]},
        "finetune": {"epochs": 2, "steps": 46, "seconds": 3.0, "lr": 1e-3, "distill": True},
        "layers": [{"layer": "features.0.0", "type": "Conv2d", "units_before": 32, "units_after": 22,
                    "kept_units": 22 / 32, "weights_before": 288, "weights_after": 198, "kept_weights": 198 / 288},
                   {"layer": "classifier", "type": "Linear", "units_before": 10, "units_after": 10,
                    "kept_units": 1.0, "weights_before": 1280, "weights_after": 880, "kept_weights": 880 / 1280}],
        "skipped": {"classifier": "feeds a model output (outputs keep their shape)"},
        "sensitivity": None, "profiles": {}, "timings": {"load": 1.0}, "notes": ["a <note> to escape"],
        "files": ["metrics.json", "model.onnx"],
    }
    base.update(overrides)
    return base


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_is_one_self_contained_file_with_inline_svg_plots():
    page = render_report(metrics())
    parser = _Collector()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    # nothing is fetched: no external scripts, stylesheets, images or fonts
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only in-page SVG references
    assert tags.count("svg") == 3  # accuracy vs MACs, accuracy vs latency, kept per layer
    assert page.count("<style>") == 1 and ".cards" in page  # the package's CSS, inline
    assert "$" not in re.sub(r"<svg.*?</svg>", "", page, flags=re.S)  # every placeholder filled


def test_report_shows_the_figures_checks_and_escapes_text():
    page = render_report(metrics())
    for text in ("with distillation", "98.70 %", "98.10 %", "2.03x", "macs=0.5", "features.0.0", "22", "feeds a model output",
                 "targets met", "40.00 %"):
        assert text in page, text
    assert "a &lt;note&gt; to escape" in page and "a <note>" not in page
    assert headline(metrics()).startswith("2.03x faster on ONNX Runtime")


def test_failed_guard_and_missing_data_read_clearly():
    failed = metrics(status="guard_failed", guard={"max_drop": 0.1, "drop": 0.6, "passed": False})
    page = render_report(failed)
    assert "accuracy guard failed" in page and "status-guard_failed" in page and "missed" in page
    no_data = metrics(metric=None, guard=None, finetune=None,
                      before={**metrics()["before"], "accuracy": None},
                      after={**metrics()["after"], "accuracy": None, "accuracy_before_finetune": None})
    page = render_report(no_data)
    assert "accuracy vs MACs needs --data" in page and page.count("<svg") == 1  # only the layer plot


def test_sensitivity_curves_are_drawn_when_present():
    curves = {"metric": "top-1 accuracy", "curves": {"features.0.0": [[0.0, 98.7], [0.5, 97.0], [0.9, 60.0]],
                                                     "features.3.0": [[0.0, 98.7], [0.5, 98.5], [0.9, 90.0]]}}
    page = render_report(metrics(sensitivity=curves))
    assert "Sensitivity" in page and page.count("<svg") == 4


def test_write_report_reads_metrics_and_refuses_other_json(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(metrics()))
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "metrics.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not the metrics of an edgeprune run"):
        write_report(tmp_path)
