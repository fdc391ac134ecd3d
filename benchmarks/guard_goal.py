"""The accuracy guard as a goal: the same run with and without recovery working to it.

    .venv/bin/python benchmarks/guard_goal.py            # mnist, macs=0.5, sensitivity, --max-drop 0.5

Runs ``edgeprune prune mnist --data mnist --target macs=0.5 --strategy sensitivity --max-drop 0.5``
twice, side by side in one process: with ``--max-epochs 1`` (the configured single epoch only: the
guard is only checked, as before it became a goal) and with the default cap (fine-tuning goes on one
epoch at a time until the guard is met). Prints, per run: exit code, accuracy before/after, drop,
epochs fine-tuned and the recovery curve. ``tests/test_guard_goal.py`` (marked slow) asserts the
second run exits 0 with the guard met.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from edgeprune.cli import _register_commands, app


def run(out: Path, extra: list[str], args) -> dict:
    flags = ["prune", args.model, "--data", args.data, "--target", args.target, "--strategy", args.strategy,
             "--max-drop", str(args.max_drop), "--out", str(out), "--json", "--latency-runs", "5", "--no-curve",
             "--force", *extra]
    started = time.perf_counter()
    result = CliRunner().invoke(app, flags, catch_exceptions=False)
    seconds = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    ft = metrics.get("finetune") or {}
    return {"exit": result.exit_code, "before": metrics["before"]["accuracy"], "after": metrics["after"]["accuracy"],
            "drop": metrics["guard"]["drop"], "epochs": ft.get("epochs"), "curve": ft.get("curve"),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--target", default="macs=0.5")
    parser.add_argument("--strategy", default="sensitivity")
    parser.add_argument("--max-drop", type=float, default=0.5)
    args = parser.parse_args()
    _register_commands()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"checked only (--max-epochs 1)": run(Path(tmp) / "once", ["--max-epochs", "1"], args),
                "a goal (default --max-epochs 10)": run(Path(tmp) / "goal", [], args)}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.model}, {args.target}, {args.strategy}, "
          f"--max-drop {args.max_drop}")
    print("| guard | exit | accuracy before -> after | drop | epochs | seconds | curve (epochs, accuracy) |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name, r in rows.items():
        curve = ", ".join(f"({e:g}, {a:.2f})" for e, a in r["curve"] or [])
        print(f"| {name} | {r['exit']} | {r['before']:.2f} -> {r['after']:.2f} | {r['drop']:.2f} | {r['epochs']:g} "
              f"| {r['seconds']:.0f} | {curve} |")


if __name__ == "__main__":
    main()
