"""Recovery fine-tuning on several processes: ``torchrun`` launches the ranks, each wraps the pruned
model in ``DistributedDataParallel`` (gloo on CPU, nccl on GPUs) and the gradients are averaged.

What travels to the ranks is a job directory: the pruned model as an edgeprune save (the original's
spec, the plans and the weights), the original's weights when distilling, and ``job.json`` with the
data spec and the fine-tuning settings. Every rank reads the same batches (the same seeded order) and
computes on its 1/N slice of each, so N processes take the steps one process would take on the same
global batch (exactly so on GPUs, where BatchNorm becomes SyncBatchNorm; on CPU torch has no
synchronised BatchNorm, so each rank normalises its own slice and the ranks share rank 0's running
statistics: close to one process, not identical). Rank 0 alone writes the result (weights and report, beside then renamed); the
caller loads them and writes the run. A rank that dies makes torchrun stop the others and exit
non-zero, and the caller raises :class:`DistributedError`: the run fails and leaves no run directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeprune.errors import EdgepruneError

RESULT = "result.json"
WEIGHTS = "finetuned.safetensors"


class DistributedError(EdgepruneError):
    """Distributed fine-tuning failed (a rank died, or the launcher could not start)."""

    exit_code = 1


@dataclass(frozen=True)
class Launch:
    """How torchrun lays out the ranks (``--nproc``, ``--nnodes``, ``--rdzv-endpoint``).

    Attributes:
        nproc: processes on this node.
        nnodes: nodes in all (run the same command on each; ``rdzv_endpoint`` is where they meet).
        rdzv_endpoint: ``HOST:PORT`` of the rendezvous (needed with ``nnodes > 1``).
        threads: torch threads per rank (``OMP_NUM_THREADS`` too; 1 per rank on a small machine).
    """

    nproc: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise ValueError(f"--nproc and --nnodes must be >= 1, got {self.nproc} and {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (where the nodes meet)")

    @property
    def distributed(self) -> bool:
        return self.nproc * self.nnodes > 1

    def command(self, job_dir: Path) -> list[str]:
        """The torchrun command line that runs the ranks on ``job_dir``."""
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(self.nproc)]
        if self.nnodes > 1:
            cmd += ["--nnodes", str(self.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", self.rdzv_endpoint,
                    "--rdzv-id", "edgeprune"]
        else:
            cmd += ["--standalone"]
        return cmd + ["-m", "edgeprune.scale.ddp_worker", str(job_dir)]


class ShardedLoader:
    """Each batch of ``loader`` cut into ``world`` slices; this rank's slice (so N ranks share each global batch).

    Args:
        loader: yields ``(inputs, targets)`` with tensors batch-first.
        rank: this process's rank.
        world: the number of ranks.
        device: where the slices go.
    """

    def __init__(self, loader: Any, rank: int, world: int, device: torch.device | None = None) -> None:
        self.loader, self.rank, self.world, self.device = loader, rank, world, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for inputs, targets in self.loader:
            if len(targets) < self.world:
                raise DistributedError(f"a batch of {len(targets)} samples cannot be shared by {self.world} ranks; "
                                       "use a larger --batch-size")
            x, y = inputs.tensor_split(self.world)[self.rank], targets.tensor_split(self.world)[self.rank]
            yield (x, y) if self.device is None else (x.to(self.device), y.to(self.device))


def finetune_distributed(pruned: nn.Module, launch: Launch, job: dict[str, Any], *,
                         teacher: nn.Module | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Fine-tune ``pruned`` (in place) on ``launch.nproc x launch.nnodes`` ranks.

    Args:
        pruned: the pruned model, built from a spec (``spec_of``) and tagged with its plans.
        launch: the torchrun layout.
        job: plain data for the ranks: ``model`` (spec), ``seed``, ``data``, ``batch_size``,
            ``input_shape``, ``val_fraction``, ``evaluate``, ``epochs``, ``lr``, ``distill``, and for
            the guard ``baseline``, ``max_drop``, ``max_epochs``.
        teacher: the unpruned model when distilling (its weights travel as a state dict).
        timeout: seconds before the launcher is stopped.

    Returns:
        Rank 0's report: ``{"epochs", "steps", "seconds", "curve", "extra_epochs", "guard_met",
        "world", "rank_max_abs_diff"}`` (the largest parameter difference of any rank from rank 0).

    Raises:
        DistributedError: a rank failed (the message names it and ends with torchrun's output).
    """
    from safetensors.torch import load_file, save_file

    from edgeprune.export.saving import save

    with tempfile.TemporaryDirectory(prefix="edgeprune-ddp-") as tmp:
        job_dir = Path(tmp)
        save(pruned, job_dir / "pruned.edgeprune")
        if teacher is not None:
            save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(job_dir / "teacher.safetensors"))
        (job_dir / "job.json").write_text(json.dumps({**job, "threads": launch.threads, "launch": asdict(launch)}))
        env = {**os.environ, "OMP_NUM_THREADS": str(launch.threads)}
        try:
            done = subprocess.run(launch.command(job_dir), env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DistributedError(f"distributed fine-tuning did not finish within {timeout:g} s") from None
        result = job_dir / RESULT
        if done.returncode != 0:
            errors = sorted(job_dir.glob("error-rank-*.txt"))
            said = (f"{errors[0].stem.replace('error-', '')} said:\n{_tail(errors[0].read_text(), 8)}" if errors
                    else f"torchrun said:\n{_tail(done.stderr + done.stdout)}")
            raise DistributedError(f"distributed fine-tuning on {launch.nproc * launch.nnodes} processes failed "
                                   f"({_failed_rank(done.stderr)}; torchrun exit code {done.returncode}); no run "
                                   f"directory is written. {said}")
        if not result.is_file():
            raise DistributedError("this node did not host rank 0: the fine-tuned model is written on the node that did")
        pruned.load_state_dict(load_file(str(job_dir / WEIGHTS)))
        pruned.eval()
        return json.loads(result.read_text())


def _failed_rank(stderr: str) -> str:
    """torchrun's summary names the first failed rank (``rank : 1 (local_rank: 1)``) and its exit code."""
    import re

    root = stderr[stderr.find("Root Cause"):] if "Root Cause" in stderr else stderr
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    if rank is None:
        return "a rank failed"
    return f"rank {rank.group(1)} exited" + (f" with code {code.group(1)}" if code else "")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def rank_difference(model: nn.Module) -> float:
    """The largest absolute difference of any rank's parameters from rank 0's (0 when the ranks agree)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    mine = flat.clone()
    dist.broadcast(flat, src=0)
    diff = (mine - flat).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
