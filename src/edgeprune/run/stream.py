"""``edgeprune stream RUN_DIR --data sensors``: a run's deployed artifact on the task's recorded stream.

The host side of :mod:`edgeprune.deploy.stream` (the loop a device runs): pick the run's deployed
file (``model.int8.tflite``, else ``model.tflite``, else ``model.onnx``), replay the task's
validation stream through it window by window, score the detections against the stream's labelled
events, write ``stream.json`` into the run and re-render its report. ``device_dir`` writes what a
board needs to run the same loop: ``stream.py``, the artifact and ``stream.npz``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.run.errors import BadInputError

STREAM_FILE = "stream.json"
ARTIFACTS = ("model.int8.tflite", "model.tflite", "model.onnx")  # what a run deploys, most specific first
# Tasks with a recorded (or simulated) stream: a module with val_stream(), stream_spec() and windows().
STREAMS = {"sensors": "edgeprune.tasks.sensors"}
_PACKAGES = {"tflm": ("tflite_micro", "tflm"), "litert": ("ai_edge_litert", "litert"),
             "onnxruntime": ("onnxruntime", "")}


def stream_run(run_dir: str | os.PathLike, data: str = "sensors", *, artifact: str | None = None,
               runtime: str | None = None, realtime: bool = False, seconds: float | None = None,
               device_dir: str | os.PathLike | None = None, write: bool = True) -> dict[str, Any]:
    """Replay ``data``'s stream through the run's deployed artifact (see the module docstring).

    Args:
        run_dir: a complete run directory.
        data: the task whose stream is replayed (``sensors``).
        artifact: a file name in the run (default: the first of :data:`ARTIFACTS` there).
        runtime: ``tflm`` (default for ``.tflite``), ``litert`` or ``onnxruntime`` (``.onnx``).
        realtime: pace the windows at the stream's real rate.
        seconds: replay only the first ``seconds`` of the stream.
        device_dir: also write ``stream.py``, the artifact and ``stream.npz`` there.
        write: write ``stream.json`` into the run and re-render its report.

    Returns:
        What :func:`edgeprune.deploy.stream.run_stream` returned, plus ``task``, ``simulated``,
        ``artifact``, ``runtime``, ``seconds``, ``labels`` (per window), ``events`` (labelled
        episodes, seconds), ``metrics`` (event recall/precision/F1, AUC) and ``run_metric``
        (the run's own figure for the same file, where the run measured it).

    Raises:
        BadInputError: not a complete run, no deployed artifact, a task without a stream, a
            runtime that does not run the file or is not installed.
    """
    from edgeprune.deploy import stream as device
    from edgeprune.run.rundir import require_complete

    run_dir = require_complete(run_dir)
    if data not in STREAMS:
        raise BadInputError(f"--data {data!r} has no recorded stream; tasks with one: {', '.join(STREAMS)}")
    task = importlib.import_module(STREAMS[data])
    path = _artifact(run_dir, artifact)
    runtime = runtime or ("onnxruntime" if path.suffix == ".onnx" else "tflm")
    if (path.suffix == ".onnx") != (runtime == "onnxruntime") or runtime not in _PACKAGES:
        raise BadInputError(f"--runtime {runtime} does not run {path.name}: .tflite runs on tflm or litert, "
                            ".onnx on onnxruntime")
    module, extra = _PACKAGES[runtime]
    if importlib.util.find_spec(module) is None:
        raise BadInputError(f"--runtime {runtime} needs {module}: pip install 'edgeprune[{extra}]'")
    metrics = _read_metrics(run_dir)
    mcu = metrics.get("mcu") or {}
    arena = None  # run the file in the arena the run measured for it, as the device would
    if runtime == "tflm" and mcu.get("artifact") == path.name:
        arena = mcu["stages"]["pruned"]["arena"]["total"]

    stream, spec = task.val_stream(), task.stream_spec()
    signal, labels = stream.signal, stream.labels
    if seconds is not None:
        if seconds * spec.fs < spec.window:
            raise BadInputError(f"--seconds {seconds} is shorter than one window ({spec.window / spec.fs:.3f} s)")
        signal, labels = signal[:, :int(seconds * spec.fs)], labels[:int(seconds * spec.fs)]
        stream = type(stream)(signal, labels, stream.fs, stream.simulated)
    try:
        result = device.run_stream(device.open_model(path, runtime, arena), signal, spec, realtime=realtime)
    except Exception as exc:  # each runtime raises its own types for a file that does not fit the windows
        raise BadInputError(f"{path.name} on {runtime} does not run the {data} stream's windows "
                            f"(1, {signal.shape[0]}, {spec.window}): {type(exc).__name__}: {str(exc)[:300]}") from exc
    _, y, _ = task.windows(stream, spec.mean, spec.std)
    result.update({"task": data, "simulated": bool(stream.simulated), "artifact": path.name, "runtime": runtime,
                   "arena": arena, "seconds": signal.shape[1] / spec.fs, "labels": y.tolist(),
                   "events": [[a / spec.fs, b / spec.fs] for a, b in stream.episodes()],
                   "metrics": {k: None if v != v else v  # NaN (AUC with one class) is not JSON
                               for k, v in task.detection_metrics(np.array(result["scores"]), y, spec.threshold).items()}})
    result["run_metric"] = _run_metric(metrics, path.name, runtime, seconds is None)
    if device_dir is not None:
        write_device_dir(device_dir, path, signal, spec)
    if write:
        _write_json(run_dir / STREAM_FILE, result)
        if metrics:
            from edgeprune.report import write_report

            write_report(run_dir)
    return result


def write_device_dir(folder: str | os.PathLike, artifact: Path, signal: np.ndarray, spec: Any) -> Path:
    """``stream.py``, the artifact and ``stream.npz`` in ``folder``: what a board runs the loop from."""
    from edgeprune.deploy import stream as device

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(device.__file__, folder / "stream.py")
    shutil.copyfile(artifact, folder / artifact.name)
    np.savez(folder / "stream.npz", signal=signal, fs=spec.fs, window=spec.window, hop=spec.hop,
             mean=spec.mean, std=spec.std, threshold=spec.threshold)
    return folder


def _artifact(run_dir: Path, name: str | None) -> Path:
    if name is not None:
        path = run_dir / name
        if not path.is_file() or path.suffix not in (".tflite", ".onnx"):
            raise BadInputError(f"--artifact {name!r}: no such .tflite or .onnx file in {run_dir}")
        return path
    for candidate in ARTIFACTS:
        if (run_dir / candidate).is_file():
            return run_dir / candidate
    raise BadInputError(f"{run_dir} holds no deployed artifact ({', '.join(ARTIFACTS)})")


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) and metrics.get("format") == "edgeprune.run" else {}


def _run_metric(metrics: dict[str, Any], artifact: str, runtime: str, whole: bool) -> dict[str, Any] | None:
    """The run's own score of the same file on the same validation windows (batch inference), when
    the run measured it and the whole stream was replayed: the two must agree."""
    mcu = metrics.get("mcu") or {}
    if not whole or runtime != "tflm" or mcu.get("artifact") != artifact:
        return None
    value = mcu["stages"]["pruned"].get("accuracy")
    return None if value is None else {"metric": metrics.get("metric") or "score", "value": value,
                                       "measured": "the run's TFLM evaluation of the same file"}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
