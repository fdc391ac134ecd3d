#!/usr/bin/env python3
"""The streaming runner: a deployed detector on a sensor stream, window by window, in time order.

This file is self-contained on purpose: a device runs it with numpy and the artifact's runtime
only (``tflite-micro`` or ``ai-edge-litert`` for a ``.tflite``, ``onnxruntime`` for an ``.onnx``).
It imports nothing from edgeprune, torch or the ``onnx`` package; ``edgeprune stream RUN_DIR
--device-dir DIR`` copies it there beside the artifact and the recorded stream. Usage::

    python stream.py model.int8.tflite stream.npz --out stream.json [--realtime] [--runtime litert]

``stream.npz`` holds ``signal`` (channels, samples) float32, ``fs``, ``window``, ``hop`` (samples),
``mean`` and ``std`` (channels, 1: the scaling the model was trained with) and ``threshold``.

The loop is what firmware does: a window is complete when its last sample has arrived, at
``(start + window) / fs`` seconds; with ``--realtime`` the runner waits for that moment (a recorded
stream replayed at its real rate), otherwise it runs as fast as it can. Each window is scaled,
run, and scored as the fault logit's margin (``out[1] - out[0]``); a window is flagged when its
score is above the threshold, and a run of consecutive flagged windows is one detection, raised
when its first window is flagged. The latency of a window is scaling + inference + scoring; the
stream is real time when its p99 is below the hop (the time until the next window is complete).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "edgeprune.stream"
_LARGE_ARENA = 64 * 2**20  # TFLM: far above any model that fits a microcontroller


@dataclass(frozen=True)
class StreamSpec:
    """How a stream is cut and scored: window and hop in samples, the rate, scaling, threshold."""

    window: int
    hop: int
    fs: float
    mean: np.ndarray  # (channels, 1)
    std: np.ndarray  # (channels, 1)
    threshold: float = 0.0

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop / self.fs


def load_stream(path: str | Path) -> tuple[np.ndarray, StreamSpec]:
    """``(signal, spec)`` from a ``stream.npz`` (see the module docstring)."""
    with np.load(path) as f:
        missing = {"signal", "fs", "window", "hop", "mean", "std", "threshold"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: not a stream file, missing {sorted(missing)}")
        spec = StreamSpec(int(f["window"]), int(f["hop"]), float(f["fs"]), f["mean"], f["std"], float(f["threshold"]))
        return f["signal"], spec


def open_model(path: str | Path, runtime: str | None = None, arena_size: int | None = None
               ) -> Callable[[np.ndarray], np.ndarray]:
    """A function from one float32 window (1, channels, window) to the model's float output.

    Args:
        path: ``.tflite`` (run by ``tflm``, the default, or ``litert``) or ``.onnx`` (``onnxruntime``).
        runtime: ``tflm``, ``litert`` or ``onnxruntime``; default by the file's suffix.
        arena_size: TFLM's arena in bytes (default: large); a device gives the measured arena.

    An INT8 file's input is quantized with its input's parameters and its output dequantized.
    """
    path = Path(path)
    runtime = runtime or ("onnxruntime" if path.suffix == ".onnx" else "tflm")
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run_litert(x: np.ndarray) -> np.ndarray:
            interp.set_tensor(inp["index"], _quantize(x, inp["dtype"], *inp["quantization"]))
            interp.invoke()
            return _dequantize(interp.get_tensor(out["index"]), *out["quantization"])

        return run_litert
    if runtime == "tflm":
        from tflite_micro.python.tflite_micro import runtime as tflm

        interp = tflm.Interpreter.from_file(str(path), arena_size=arena_size or _LARGE_ARENA)
        inp, out = _tflm_details(interp.get_input_details(0)), _tflm_details(interp.get_output_details(0))

        def run_tflm(x: np.ndarray) -> np.ndarray:
            interp.set_input(_quantize(x, inp[0], inp[1], inp[2]).reshape(inp[3]), 0)
            interp.invoke()
            return _dequantize(interp.get_output(0), out[1], out[2])

        return run_tflm
    raise ValueError(f"unknown runtime {runtime!r}: use tflm, litert or onnxruntime")


def run_stream(model: Callable[[np.ndarray], np.ndarray], signal: np.ndarray, spec: StreamSpec, *,
               realtime: bool = False, clock: Callable[[], float] = time.perf_counter,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """Run ``model`` over ``signal`` window by window in time order (see the module docstring).

    Args:
        model: from :func:`open_model`.
        signal: (channels, samples) float32.
        spec: the stream's window, hop, rate, scaling and threshold.
        realtime: wait until each window is complete at the stream's real rate.

    Returns:
        ``{"format", "windows", "starts", "scores", "flags", "detections", "threshold", "fs",
        "window_ms", "latency_ms", "hop_ms", "realtime", "paced", "late"}``; ``detections`` holds
        ``{"first", "last", "raised_s", "end_s", "peak"}`` per run of flagged windows (window indices
        and stream seconds); ``late`` counts windows (paced only) whose score came after the next
        window was complete.
    """
    if signal.ndim != 2 or signal.shape[0] != spec.mean.shape[0]:
        raise ValueError(f"signal must be (channels={spec.mean.shape[0]}, samples), got {signal.shape}")
    starts = list(range(0, signal.shape[1] - spec.window + 1, spec.hop))
    scores, latency, late = [], [], 0
    t0 = clock()
    for start in starts:
        ready = (start + spec.window) / spec.fs  # the window's last sample has arrived
        if realtime:
            wait = t0 + ready - clock()
            if wait > 0:
                sleep(wait)
        began = clock()
        # the same arithmetic (float32) as the windows the model was trained and evaluated on
        x = ((signal[:, start:start + spec.window] - spec.mean) / spec.std).astype(np.float32)[None]
        out = np.asarray(model(x), dtype=np.float32).reshape(-1)
        scores.append(float(out[1] - out[0]))
        done = clock()
        latency.append(done - began)
        late += int(realtime and done - t0 > ready + spec.hop / spec.fs)
    score = np.array(scores, dtype=np.float32)
    flags = score > spec.threshold
    ms = 1000.0 * np.array(latency) if latency else np.zeros(1)
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99))
    return {"format": FORMAT, "windows": len(starts), "starts": starts, "scores": score.tolist(),
            "flags": flags.astype(int).tolist(), "detections": detections(score, flags, starts, spec),
            "threshold": spec.threshold, "fs": spec.fs, "window_ms": 1000.0 * spec.window / spec.fs,
            "latency_ms": {"p50": p50, "p99": p99, "max": float(ms.max()), "mean": float(ms.mean())},
            "hop_ms": spec.hop_ms, "realtime": bool(p99 < spec.hop_ms), "paced": realtime,
            "late": late if realtime else None}


def detections(scores: np.ndarray, flags: np.ndarray, starts: list[int], spec: StreamSpec) -> list[dict]:
    """Runs of consecutive flagged windows, each raised when its first window is complete."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    out = []
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        out.append({"first": int(a), "last": int(b - 1), "raised_s": (starts[a] + spec.window) / spec.fs,
                    "end_s": (starts[b - 1] + spec.window) / spec.fs, "peak": float(scores[a:b].max())})
    return out


def _tflm_details(d: dict) -> tuple:
    q = d.get("quantization_parameters") or {}
    scales, zeros = q.get("scales", np.zeros(0)), q.get("zero_points", np.zeros(0))
    return (d["dtype"], float(scales[0]) if len(scales) else 0.0, int(zeros[0]) if len(zeros) else 0,
            tuple(int(s) for s in d["shape"]))


def _quantize(x: np.ndarray, dtype, scale: float, zero: int) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale) + zero, info.min, info.max)
    return np.ascontiguousarray(x, dtype=dtype)


def _dequantize(y: np.ndarray, scale: float, zero: int) -> np.ndarray:
    y = np.array(y, copy=True)
    if np.issubdtype(y.dtype, np.integer) and scale:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", help=".tflite or .onnx file")
    ap.add_argument("stream", help="stream.npz")
    ap.add_argument("--runtime", choices=("tflm", "litert", "onnxruntime"), default=None)
    ap.add_argument("--arena", type=int, default=None, help="TFLM arena bytes")
    ap.add_argument("--realtime", action="store_true", help="pace the windows at the stream's real rate")
    ap.add_argument("--out", default="stream.json")
    args = ap.parse_args(argv)
    signal, spec = load_stream(args.stream)
    result = run_stream(open_model(args.artifact, args.runtime, args.arena), signal, spec, realtime=args.realtime)
    result["artifact"] = Path(args.artifact).name
    Path(args.out).write_text(json.dumps(result))
    lat = result["latency_ms"]
    print(f"{result['windows']} windows, {len(result['detections'])} detections; latency p50 {lat['p50']:.3f} ms, "
          f"p99 {lat['p99']:.3f} ms vs hop {result['hop_ms']:.0f} ms: "
          f"{'real time' if result['realtime'] else 'NOT real time'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
