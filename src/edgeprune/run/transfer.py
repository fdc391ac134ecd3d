"""Does a plan's gain carry over to other runtimes? The original and the pruned model of a run,
measured on every runtime asked for, interleaved per runtime, each artifact checked against PyTorch.

Why: the same cut runs very differently on different kernels. On the 2-core development machine a
mobilenet_v2 with 60% of each expansion kept at odd widths ran at 0.70x of the unpruned model on
ONNX Runtime (slower) but 1.33x on ExecuTorch and 1.23x on OpenVINO; rounding the widths to 8 made
ORT 1.8x faster on the same cut. So besides the whole-model figures, the depthwise layers whose
kept width is not a multiple of 8 are timed on each runtime against the same layer rounded up to 8
channels (more work): where the odd width is the slower one, it sits on a slow step of that
runtime and a warning says so.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

TRANSFER_FILE = "transfer.json"
STEP = 8
SLOW_STEP_MARGIN = 1.10  # the odd width must be this much slower than the wider one (noise is ~10% here)


def transfer(run_dir: str | os.PathLike, runtimes: list[str], *, threads: int = 2, rounds: int = 10, runs: int = 5,
             warmup: int = 2, check_widths: int = 3, write: bool = True) -> dict[str, Any]:
    """Measure a run's original and pruned model on several runtimes.

    Args:
        run_dir: a complete run directory.
        runtimes: runtime names; each must be installed (else the pip command is named).
        threads: worker threads of every session.
        rounds / runs / warmup: the interleaved protocol (:mod:`edgeprune.runtimes.timing`).
        check_widths: how many of the largest odd-width depthwise layers to time against width
            rounded to 8 (0: none).
        write: write ``transfer.json`` into the run and re-render its report.

    Returns:
        ``{"threads", "rows": [{runtime, version, threads, precision, original_ms, pruned_ms, speedup,
        parity}], "warnings": [...], "widths": [...]}``.

    Raises:
        BadInputError: not a complete run. RuntimeMissingError / UnknownRuntimeError: a runtime.
    """
    from edgeprune.run.inputs import build_model
    from edgeprune.run.reload import load_run_model
    from edgeprune.run.rundir import require_complete
    from edgeprune.runtimes import Artifact, measure_interleaved, parse_runtimes

    plugins = parse_runtimes(runtimes)
    run_dir = require_complete(run_dir)
    recipe = json.loads((run_dir / "recipe.json").read_text())
    pruned, example = load_run_model(run_dir)
    original = build_model(recipe["model"], int(recipe.get("seed", 0)), trained=True).eval()
    pruned.eval()
    rows, widths = [], []
    with tempfile.TemporaryDirectory(prefix="edgeprune-transfer-") as tmp:
        for rt in plugins:
            folder = Path(tmp) / rt.name
            paths, parity = {}, {}
            for name, model in (("original", original), ("pruned", pruned)):
                options = {}
                if rt.name == "openvino" and "onnxruntime" in paths:
                    options = {"onnx": paths["onnxruntime"][name]}
                paths[name] = rt.export(model, example, rt.artifact_path(folder, name), **options)
                parity[name] = rt.check(paths[name], model, example).max_rel
            got = measure_interleaved({n: Artifact(rt.name, p) for n, p in paths.items()}, example, threads=threads,
                                      rounds=rounds, runs=runs, warmup=warmup)
            o, p = got["original"], got["pruned"]
            rows.append({"runtime": rt.name, "version": o.version, "threads": o.threads, "precision": o.precision,
                         "original_ms": o.ms, "pruned_ms": p.ms, "speedup": o.ms / p.ms if p.ms else None,
                         "parity_max_rel": parity, "spread": max(o.spread, p.spread)})
        if check_widths:
            widths = width_steps(pruned, example, [rt.name for rt in plugins], Path(tmp) / "widths",
                                 threads=threads, limit=check_widths, rounds=max(3, rounds // 2), runs=runs)
    warnings = [w["warning"] for w in widths if w.get("warning")]
    result = {"format": "edgeprune.transfer", "version": 1, "model": recipe["model"], "threads": threads,
              "protocol": {"rounds": rounds, "runs": runs, "warmup": warmup, "order": "interleaved per runtime"},
              "rows": rows, "widths": widths, "warnings": warnings}
    if write:
        _write_json(run_dir / TRANSFER_FILE, result)
        from edgeprune.report import write_report

        write_report(run_dir)
    return result


def odd_depthwise(model: nn.Module, example_inputs, step: int = STEP) -> list[dict[str, Any]]:
    """Depthwise convs whose width is not a multiple of ``step``, largest MACs first, with their input shape."""
    from edgeprune.graph.trace import call_model

    found, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and m.out_channels % step:
            def hook(mod, inputs, output, name=name):
                found.append({"layer": name, "width": mod.out_channels, "kernel": list(mod.kernel_size),
                              "stride": list(mod.stride), "padding": list(mod.padding),
                              "input": list(inputs[0].shape[-2:]),
                              "macs": int(output.numel() * mod.kernel_size[0] * mod.kernel_size[1])})
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            call_model(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return sorted(found, key=lambda r: -r["macs"])


def width_steps(model: nn.Module, example_inputs, runtimes: list[str], folder: Path, *, threads: int, limit: int = 3,
                rounds: int = 5, runs: int = 5) -> list[dict[str, Any]]:
    """Time each of the ``limit`` largest odd-width depthwise layers against its width rounded up to 8.

    Returns:
        One dict per (layer, runtime): ``layer, width, rounded, runtime, odd_ms, rounded_ms, warning``.
    """
    from edgeprune.runtimes import Artifact, get_runtime, measure_interleaved

    out = []
    for layer in odd_depthwise(model, example_inputs)[:limit]:
        w, k, s, p = layer["width"], layer["kernel"], layer["stride"], layer["padding"]
        rounded = -(-w // STEP) * STEP
        x_odd = torch.randn(1, w, *layer["input"])
        x_round = torch.randn(1, rounded, *layer["input"])
        for rt_name in runtimes:
            rt = get_runtime(rt_name)
            paths = {}
            for tag, c, x in (("odd", w, x_odd), ("rounded", rounded, x_round)):
                conv = nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c), nn.ReLU6()).eval()
                paths[tag] = rt.export(conv, x, rt.artifact_path(folder / rt_name, f"{layer['layer']}-{tag}"))
            got = measure_interleaved({"odd": Artifact(rt_name, paths["odd"], inputs=x_odd),
                                       "rounded": Artifact(rt_name, paths["rounded"], inputs=x_round)}, x_odd,
                                      threads=threads, rounds=rounds, runs=runs)
            t_odd, t_round = got["odd"].ms, got["rounded"].ms
            row = {"layer": layer["layer"], "width": w, "rounded": rounded, "runtime": rt_name,
                   "odd_ms": t_odd, "rounded_ms": t_round, "warning": None}
            if t_odd > t_round * SLOW_STEP_MARGIN:
                row["warning"] = (f"{rt_name}: depthwise {layer['layer']} at width {w} runs {t_odd / t_round:.2f}x "
                                  f"the time of width {rounded} ({t_odd:.3f} vs {t_round:.3f} ms): the plan sits on "
                                  f"a slow step of {rt_name}; round this layer's width to {STEP} (--round-to {STEP})")
            out.append(row)
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
