"""The microcontroller step of a run: the deployed ``.tflite`` measured in TensorFlow Lite Micro.

When a run has a ``ram=`` or ``flash=`` target (``--device`` adds both) or ``--runtime tflm``, the
pruned model is written as the file a microcontroller flashes (``model.tflite`` in FP32, or
``model.int8.tflite``, LiteRT's static INT8 calibrated on the run's data, with ``--quantize int8``),
and so is the original beside it. Each file is loaded in the TFLM interpreter: its arena is read
from the allocator's report, its bytes from the disk, and the pruned file's accuracy is that of the
file run in TFLM over the validation data. ``ram=`` is judged on the measured arena, ``flash=`` on
the file's bytes plus the device's stated runtime-code allowance, and the accuracy guard on the TFLM
accuracy of the deployed file (:func:`judge_mcu`). The arena predicted from the traced graph (what
the plan was made on) is kept beside the measurement.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger("edgeprune.run")


class TflmModule(nn.Module):
    """A ``.tflite`` file run in the TFLM interpreter, sample by sample, as a module (for ``evaluate``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from edgeprune.runtimes import get_runtime

        self.session = get_runtime("tflm").open(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(np.concatenate([self.session.run([a[i:i + 1]])[0] for i in range(a.shape[0])]))


def mcu_step(directory: Path, inputs: Any, pruned: nn.Module, recipe: Any, notes: list[str]) -> dict[str, Any]:
    """Write and measure the original's and the pruned model's TFLM files (see the module docstring).

    Args:
        directory: the run's staging directory.
        inputs: the run's inputs (model, example, loaders, evaluate).
        pruned: the pruned, fine-tuned model.
        recipe: the run's recipe (quantize, device, seed, calibration_batches).
        notes: the run's notes.

    Returns:
        The ``mcu`` object of ``metrics.json``: ``artifact``, ``precision``, ``device``,
        ``runtime_flash``, and per stage (``dense``, ``pruned``) ``arena`` (total/head/tail),
        ``predicted_arena``, ``bytes``, ``flash`` (bytes + allowance), ``accuracy`` (pruned only).
    """
    from edgeprune.runtimes import get_runtime
    from edgeprune.runtimes.tflm import measure_arena
    from edgeprune.targets.devices import get_device
    from edgeprune.targets.sram import predict_arena

    int8 = recipe.quantize == "int8"
    precision = "int8" if int8 else "float32"
    example = inputs.example[:1]
    device = get_device(recipe.device) if recipe.device else None
    allowance = device.runtime_flash if device else 0
    name = "model.int8.tflite" if int8 else "model.tflite"
    batches = None
    if int8:
        from edgeprune.quantize import Calibration, calibration_batches

        loader = inputs.train if inputs.train is not None else inputs.val
        batches = calibration_batches(loader, Calibration(recipe.calibration_batches, seed=recipe.seed))
    stages: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeprune-tflm-") as tmp:
        for stage, model, path in (("dense", inputs.model, Path(tmp) / name), ("pruned", pruned, directory / name)):
            if path.exists():  # the INT8 step or --runtime tflm's verdict wrote it already: the same file
                pass
            elif int8:
                from edgeprune.quantize.litert import quantize_litert

                quantize_litert(model, example, batches, path)
            else:
                get_runtime("tflm").export(model, example, path)
            arena = measure_arena(path)
            size = path.stat().st_size
            stages[stage] = {"arena": arena.to_dict(), "predicted_arena": predict_arena(model, example, precision).total,
                             "bytes": size, "flash": size + allowance, "accuracy": None}
            if stage == "pruned" and inputs.evaluate is not None:
                stages[stage]["accuracy"] = inputs.evaluate(TflmModule(path))
    log.info("tflm: %s", {s: (v["arena"]["total"], v["bytes"], v["accuracy"]) for s, v in stages.items()})
    if device is None and allowance == 0 and any(t.metric == "flash" for t in recipe.targets):
        notes.append("flash= counts the .tflite file only: give --device to add the runtime's code allowance")
    return {"artifact": name, "precision": precision, "runtime": "tflm", "stages": stages,
            "runtime_flash": allowance,
            "device": None if device is None else {"name": device.name, "description": device.description,
                                                   "flash": device.flash, "sram": device.sram,
                                                   "clock_mhz": device.clock_mhz}}


def judge_mcu(mcu: dict[str, Any], checks: list[dict[str, Any]], guard: dict[str, Any] | None,
              acc_before: float | None, targets: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Judge ``ram=`` on the measured arena, ``flash=`` on the file plus the allowance, and the guard on
    the TFLM accuracy of the deployed file.

    Args:
        mcu: what :func:`mcu_step` returned.
        checks: the run's target checks so far.
        guard: the run's guard, or ``None``.
        acc_before: the dense FP32 accuracy (PyTorch).
        targets: the run's parsed terms (for relative limits).

    Returns:
        ``(checks, guard)`` with the ``ram``/``flash`` checks measured on the artifact.
    """
    dense, pruned = mcu["stages"]["dense"], mcu["stages"]["pruned"]
    by_text = {t.text: t for t in targets}
    out = []
    for c in checks:
        c = dict(c)
        t = by_text.get(c["target"])
        if t is not None and t.metric in ("ram", "flash"):
            key = "flash"
            original = dense["arena"]["total"] if t.metric == "ram" else dense[key]
            c["limit"] = t.limit_for(original)
            c["reached"] = pruned["arena"]["total"] if t.metric == "ram" else pruned[key]
            c["met"] = bool(c["reached"] <= c["limit"])
            c["judged_on"] = f"{mcu['artifact']} in TFLite Micro"
        out.append(c)
    acc = pruned["accuracy"]
    if guard is not None and acc is not None and acc_before is not None:
        drop = acc_before - acc
        guard = {**guard, "fp32_drop": guard.get("drop"), "drop": drop, "judged_on": f"{mcu['artifact']} in TFLite Micro",
                 "passed": bool(drop <= guard["max_drop"] + 1e-9)}
    return out, guard
