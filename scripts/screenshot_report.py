#!/usr/bin/env python3
"""Screenshot a run's report.html in headless Chromium, to check that it opens and its plots render.

Usage:
    python scripts/screenshot_report.py runs/demo                 # writes runs/demo-report.png
    python scripts/screenshot_report.py runs/demo/report.html -o shot.png --height 4000

Needs Chromium (``apt-get install chromium``) or Chrome; set ``$CHROMIUM`` to its path if it is
not on ``PATH``. Exits 1 with a message when no browser is found or the screenshot is not written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """The Chromium/Chrome executable: ``$CHROMIUM``, else the first of BROWSERS on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(report: Path, png: Path, *, width: int = 1280, height: int = 3200, browser: str | None = None) -> Path:
    """Render ``report`` headless at ``width`` x ``height`` CSS pixels and save a PNG.

    Raises:
        FileNotFoundError: no report, or no browser.
        RuntimeError: the browser ran but wrote no PNG.
    """
    if not report.is_file():
        raise FileNotFoundError(f"no report at {report}")
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium, or set $CHROMIUM")
    png = png.resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeprune-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
               report.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"{browser} wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a run directory or its report.html")
    parser.add_argument("-o", "--out", type=Path, help="PNG to write (default: beside the run directory)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3200)
    args = parser.parse_args(argv)
    report = args.report / "report.html" if args.report.is_dir() else args.report
    out = args.out or report.parent.with_name(f"{report.parent.name}-report.png")
    try:
        path = screenshot(report, out, width=args.width, height=args.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
