"""The INT8 step of a run (``--quantize int8``) and how it changes what the run is judged on.

After pruning and fine-tuning, the pruned model and (for the quantize-only baseline) the dense one
are quantized with the toolchain of the run's runtime, calibrated on ``calibration_batches``
batches of the user's training data (seeded by the run's seed):

- ``onnxruntime``: ONNX Runtime's static quantizer on the exported ONNX files (:mod:`edgeprune.quantize.ort`),
  ``model.int8.onnx``;
- ``litert``: litert-torch's PT2E quantizer with the residual adds annotated (:mod:`edgeprune.quantize.litert`),
  ``model.int8.tflite``;
- ``executorch``: the XNNPACK quantizer and delegate (:mod:`edgeprune.quantize.executorch`), ``model.int8.pte``;
- ``openvino``: NNCF on the exported ONNX files, the IR converted from its QDQ model
  (:mod:`edgeprune.quantize.openvino`), ``model.int8.xml`` + ``model.int8.bin``.

Each INT8 file lands in the run directory checked against its fake-quant reference. Then four
files are measured side by side on that runtime: dense FP32, pruned FP32, pruned INT8 and dense
INT8. Accuracy of an INT8 file is its own, run in its runtime over the validation data with the
run's evaluation function; latency is timed interleaved (single runs alternate between the four
files, round after round), so the ratios do not depend on when each was taken.

What the run is judged on (:func:`judge_int8`): the accuracy guard reads the pruned INT8 file's
accuracy (drop from the dense FP32 model), ``size=`` counts the INT8 file's bytes, ``latency=8ms``
reads the pruned INT8 file's latency, and ``speedup=2x`` (or ``latency=0.5``) is the pruned INT8
file's speed-up over the dense INT8 file (the quantize-only baseline, what the user would deploy
without pruning), both timed in the same interleaved session. That is the definition the latency
search plans with (an int8 latency table, both models measured as INT8 files), so search and
verdict read the same ratio; the speed-up over dense FP32 (pruning and quantization together)
is reported beside it (``speedup_vs_dense_fp32``).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch.nn as nn

log = logging.getLogger("edgeprune.run")

ARTIFACTS = {"onnxruntime": "model.int8.onnx", "litert": "model.int8.tflite", "executorch": "model.int8.pte",
             "tflm": "model.int8.tflite",  # TFLite Micro runs LiteRT's INT8 file
             "openvino": "model.int8.xml"}  # its weights in model.int8.bin beside it
ARTIFACT = ARTIFACTS["onnxruntime"]
STAGES = ("dense_fp32", "pruned_fp32", "pruned_int8", "dense_int8")
STAGE_LABELS = {"dense_fp32": "dense FP32", "pruned_fp32": "pruned FP32", "pruned_int8": "pruned INT8",
                "dense_int8": "dense INT8 (quantize only)"}


def quantize_step(directory: Path, inputs: Any, pruned: nn.Module, recipe: Any, *, acc_dense: float | None,
                  acc_pruned: float | None, macs: tuple[float, float], notes: list[str]) -> dict[str, Any]:
    """Quantize the pruned model into ``directory`` (the runtime's INT8 file) and measure the four stages.

    Args:
        directory: the run's staging directory.
        inputs: the run's :class:`edgeprune.run.inputs.RunInputs` (model, example, loaders, evaluate).
        pruned: the pruned, fine-tuned model.
        recipe: the run's recipe (runtime, seed, threads, latency_runs, calibration_batches).
        acc_dense: accuracy of the dense FP32 model (PyTorch; its exported file is checked against it).
        acc_pruned: accuracy of the pruned FP32 model, likewise.
        macs: MACs of the dense and the pruned model (INT8 runs the same MACs).
        notes: the run's notes (a line is added when calibration falls back to validation data).

    Returns:
        The ``int8`` object of ``metrics.json``: ``stages`` (accuracy, bytes, latency_ms, macs per
        stage), ``artifact``, ``runtime``, ``calibration``, ``parity``, ``float_ops``, ``settings``, ``latency``.

    Raises:
        QuantizeError: calibration data that does not fit, an op that cannot be quantized (named),
            or a runtime with no INT8 path here.
    """
    from edgeprune.quantize import Calibration, QuantizeError, calibration_batches

    runtime = recipe.runtime
    if runtime not in ARTIFACTS:
        raise QuantizeError(f"--quantize int8 has no {runtime} path (INT8 is built for {', '.join(ARTIFACTS)}); "
                            f"quantize for one of those or drop --quantize")
    loader = inputs.train if inputs.train is not None else inputs.val
    source = "training" if inputs.train is not None else "validation"
    if inputs.train is None:
        notes.append("INT8 was calibrated on the validation data (the data gives no training loader)")
    batches = calibration_batches(loader, Calibration(recipe.calibration_batches, seed=recipe.seed))
    with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as tmp:
        made = {"onnxruntime": _ort, "openvino": _openvino}.get(runtime, _from_torch)(
            runtime, Path(tmp), directory / ARTIFACTS[runtime], inputs, pruned, batches, recipe.threads)
        files, q, module = made["files"], made["pruned"], made["module"]
        accuracy = {"dense_fp32": acc_dense, "pruned_fp32": acc_pruned, "pruned_int8": None, "dense_int8": None}
        if inputs.evaluate is not None:
            for stage in ("pruned_int8", "dense_int8"):
                accuracy[stage] = inputs.evaluate(module(files[stage]))
        latency = interleaved_latency(files, inputs.example, threads=recipe.threads, runs=recipe.latency_runs,
                                      runtime=runtime)
        stages = {s: {"accuracy": accuracy[s], "bytes": _bytes(files[s]), "latency_ms": latency[s],
                      "macs": macs[0] if s.startswith("dense") else macs[1]} for s in STAGES}
    log.info("int8: %s", {s: (v["accuracy"], v["bytes"], round(v["latency_ms"], 4)) for s, v in stages.items()})
    return {"artifact": ARTIFACTS[runtime], "runtime": runtime, "stages": stages,
            "calibration": {"batches": len(batches), "samples": int(sum(b.shape[0] for b in batches)),
                            "seed": recipe.seed, "data": source},
            "parity": q.parity.to_dict(), "parity_dense": made["dense"].parity.to_dict(),
            "float_ops": q.float_ops if hasattr(q, "float_ops") else getattr(q, "undelegated", []),
            "ops": getattr(q, "ops", {}), "settings": getattr(q, "settings", {}),
            "latency": {"threads": recipe.threads, "runs": max(2, recipe.latency_runs // 5) * 5, "batch": 1,
                        "interleaved": True, "runtime": runtime}}


def _ort(runtime: str, tmp: Path, out: Path, inputs: Any, pruned: nn.Module, batches, threads: int) -> dict[str, Any]:
    """ONNX Runtime: export both models with a free batch, quantize the ONNX files."""
    from edgeprune.export.onnx import export_onnx
    from edgeprune.quantize import OnnxModule, quantize_onnx

    files = {"dense_fp32": tmp / "dense.onnx", "pruned_fp32": tmp / "pruned.onnx", "pruned_int8": out,
             "dense_int8": tmp / "dense.int8.onnx"}
    export_onnx(inputs.model, inputs.example, files["dense_fp32"], dynamic_batch=True)
    export_onnx(pruned, inputs.example, files["pruned_fp32"], dynamic_batch=True)
    q = quantize_onnx(files["pruned_fp32"], files["pruned_int8"], batches)
    dense_q = quantize_onnx(files["dense_fp32"], files["dense_int8"], batches)
    return {"files": files, "pruned": q, "dense": dense_q, "module": lambda p: OnnxModule(p, threads=threads)}


def _openvino(runtime: str, tmp: Path, out: Path, inputs: Any, pruned: nn.Module, batches,
              threads: int) -> dict[str, Any]:
    """OpenVINO: ONNX files with a free batch; FP32 IRs converted from them, INT8 IRs by NNCF on them."""
    from edgeprune.export.onnx import export_onnx
    from edgeprune.quantize import FileModule
    from edgeprune.quantize.openvino import quantize_openvino
    from edgeprune.runtimes import get_runtime

    rt = get_runtime(runtime)
    files = {"dense_fp32": tmp / "dense.xml", "pruned_fp32": tmp / "pruned.xml", "pruned_int8": out,
             "dense_int8": tmp / "dense.int8.xml"}
    for stage, model in (("dense", inputs.model), ("pruned", pruned)):
        onnx_file = export_onnx(model, inputs.example, tmp / f"{stage}.onnx", dynamic_batch=True)
        rt.export(model, inputs.example, files[f"{stage}_fp32"], onnx=onnx_file)
    q = quantize_openvino(tmp / "pruned.onnx", files["pruned_int8"], batches, threads=threads)
    dense_q = quantize_openvino(tmp / "dense.onnx", files["dense_int8"], batches, threads=threads)
    return {"files": files, "pruned": q, "dense": dense_q, "module": lambda p: FileModule(p, threads=threads)}


def _bytes(path: Path) -> int:
    """A file's bytes with its companion (an OpenVINO IR is its ``.xml`` and its ``.bin``)."""
    companion = path.with_suffix(".bin")
    return path.stat().st_size + (companion.stat().st_size if path.suffix == ".xml" and companion.exists() else 0)


def _from_torch(runtime: str, tmp: Path, out: Path, inputs: Any, pruned: nn.Module, batches,
                threads: int) -> dict[str, Any]:
    """LiteRT / ExecuTorch: FP32 files by the runtime's plug-in, INT8 by its PT2E quantizer, at batch 1."""
    from edgeprune.quantize import FileModule
    from edgeprune.runtimes import get_runtime

    if runtime in ("litert", "tflm"):
        from edgeprune.quantize.litert import quantize_litert as quantize
    else:
        from edgeprune.quantize.executorch import quantize_executorch as quantize
    rt = get_runtime(runtime)
    example = inputs.example[:1]
    files = {"dense_fp32": rt.artifact_path(tmp, "dense"), "pruned_fp32": rt.artifact_path(tmp, "pruned"),
             "pruned_int8": out, "dense_int8": tmp / f"dense.int8{rt.suffix}"}
    rt.export(inputs.model, example, files["dense_fp32"])
    rt.export(pruned, example, files["pruned_fp32"])
    q = quantize(pruned, example, batches, files["pruned_int8"])
    dense_q = quantize(inputs.model, example, batches, files["dense_int8"])
    return {"files": files, "pruned": q, "dense": dense_q, "module": lambda p: FileModule(p, threads=threads)}


def interleaved_latency(files: dict[str, Path], example: Any, *, threads: int, runs: int,
                        runtime: str = "onnxruntime") -> dict[str, float]:
    """Latency (ms, batch 1) of several files on ``runtime``, timed interleaved by the one protocol
    (:func:`edgeprune.runtimes.measure_interleaved`: single runs alternate between the files, round by
    round, each relative to the first in the same round), ``runs`` timed runs per file in all."""
    from edgeprune.runtimes import Artifact, measure_interleaved

    rounds = max(2, runs // 5)
    got = measure_interleaved({name: Artifact(runtime, path) for name, path in files.items()}, example[:1],
                              threads=threads, rounds=rounds, runs=5, warmup=2)
    return {name: m.ms for name, m in got.items()}


def judge_int8(int8: dict[str, Any], checks: list[dict[str, Any]], guard: dict[str, Any] | None,
               acc_before: float | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Re-judge the size and latency targets and the accuracy guard on the pruned INT8 file.

    Args:
        int8: what :func:`quantize_step` returned.
        checks: the run's target checks (on the FP32 model).
        guard: the run's guard (on the FP32 model), or ``None``.
        acc_before: the dense FP32 accuracy.

    Returns:
        ``(checks, guard)``: size checks read the INT8 file's bytes, latency checks its latency
        (a speed-up: against dense INT8 timed with it; the speed-up over dense FP32 beside); the guard's ``drop`` is the INT8 file's (``fp32_drop``
        keeps the FP32 one) and ``judged_on`` names the artifact.
    """
    from edgeprune.run.recipe import parse_target

    stages = int8["stages"]
    new_checks = []
    for c in checks:
        c = dict(c)
        if c["metric"] == "size":
            c["reached"] = stages["pruned_int8"]["bytes"]
            c["met"] = bool(c["reached"] <= c["limit"] * (1 + 1e-9))
            c["judged_on"] = int8["artifact"]
        elif c["metric"] in ("latency", "speedup"):
            target = parse_target(c["target"])
            dense, lat = stages["dense_int8"]["latency_ms"], stages["pruned_int8"]["latency_ms"]
            c["limit"] = target.limit_for(dense) if target.metric == "speedup" or target.relative else target.value
            c["reached"], c["met"], c["judged_on"] = lat, bool(lat <= c["limit"]), int8["artifact"]
            c["against"] = "dense INT8"
            c["speedup_vs_dense_fp32"] = stages["dense_fp32"]["latency_ms"] / lat if lat else None
        new_checks.append(c)
    if guard is not None:
        acc = stages["pruned_int8"]["accuracy"]
        drop = acc_before - acc if acc_before is not None and acc is not None else None
        guard = {**guard, "fp32_drop": guard.get("drop"), "drop": drop, "judged_on": int8["artifact"],
                 "passed": None if drop is None else bool(drop <= guard["max_drop"] + 1e-9)}
    return new_checks, guard
