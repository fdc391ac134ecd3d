"""The run's before/after latency, and so its met/missed verdict, from one interleaved session.

The profiles of the original and of the pruned model are taken minutes apart (fine-tuning and the
search run in between); on a shared machine load moves in that time, and a run once reported
9.82 -> 9.88 ms ("missed", exit 3) for a pair of files that an interleaved measurement put at
1.77x. So the figures the verdict reads are measured here, the two ONNX files in one process,
round by round (:func:`edgeprune.runtimes.measure_interleaved`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from edgeprune.specs import ExampleInputs


def deploy(runtime: str, original: nn.Module, pruned: nn.Module, example_inputs: ExampleInputs,
           original_onnx: Path, run_dir: Path) -> tuple[Path, Path]:
    """The two artifacts the verdict times: for ONNX Runtime the ONNX files; for another runtime its
    artifact of the pruned model written into the run (``model.tflite``, ``model.pte``,
    ``model.xml`` + ``model.bin``) and of the original beside the original's ONNX file, both checked
    against PyTorch."""
    from edgeprune.runtimes import get_runtime

    rt = get_runtime(runtime)
    if rt.name == "onnxruntime":
        return original_onnx, run_dir / "model.onnx"
    paths = []
    for model, onnx, folder in ((original, original_onnx, original_onnx.parent), (pruned, run_dir / "model.onnx", run_dir)):
        options = {"onnx": onnx} if rt.name == "openvino" else {}
        paths.append(rt.export(model, example_inputs, rt.artifact_path(folder), **options))
    return paths[0], paths[1]


def interleaved_latency(original: str | os.PathLike, pruned: str | os.PathLike, example_inputs: ExampleInputs, *,
                        threads: int, runs: int = 50, runtime: str = "onnxruntime") -> dict[str, Any]:
    """Time the original's and the pruned model's artifacts interleaved.

    Args:
        original / pruned: the two artifacts (ONNX files for ``onnxruntime``).
        example_inputs: their input.
        threads: worker threads.
        runs: timed runs per model in all (spread over ``max(5, runs // 5)`` rounds).
        runtime: the runtime both run on.

    Returns:
        ``{"runtime", "version", "threads", "precision", "original_ms", "pruned_ms", "speedup",
        "protocol"}``.
    """
    from edgeprune.runtimes import Artifact, measure_interleaved

    rounds = max(5, runs // 5)
    per_round = max(1, -(-runs // rounds))
    got = measure_interleaved({"original": Artifact(runtime, original), "pruned": Artifact(runtime, pruned)},
                              example_inputs, threads=threads, rounds=rounds, runs=per_round, warmup=2)
    o, p = got["original"], got["pruned"]
    return {"runtime": o.runtime, "version": o.version, "threads": o.threads, "precision": o.precision,
            "original_ms": o.ms, "pruned_ms": p.ms, "speedup": o.ms / p.ms if p.ms else None,
            "protocol": {"order": "interleaved, single runs alternating", "rounds": rounds, "runs": per_round,
                         "warmup": 2, "spread": round(max(o.spread, p.spread), 4)}}
