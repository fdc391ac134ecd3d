"""One rank of distributed fine-tuning (``torchrun ... -m edgeprune.scale.ddp_worker JOB_DIR``; see
``edgeprune.scale.ddp``). It rebuilds the pruned model from its save, the data from its spec,
wraps the model in ``DistributedDataParallel`` and runs the run's own fine-tuning on its slice of
each batch. Rank 0 writes the weights and the report into ``JOB_DIR`` (beside, then renamed)."""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main(job_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    from edgeprune.export.saving import load
    from edgeprune.run.finetune import fine_tune, finetune_config
    from edgeprune.run.inputs import bind_evaluate, build_model, load_callable, load_data
    from edgeprune.scale.ddp import RESULT, WEIGHTS, ShardedLoader, rank_difference

    job = json.loads((job_dir / "job.json").read_text())
    cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(int(job.get("threads", 1)))
    if os.environ.get("EDGEPRUNE_DDP_FAIL_RANK") == str(rank):  # for the tests: a rank that dies
        raise SystemExit(f"rank {rank}: failing on purpose (EDGEPRUNE_DDP_FAIL_RANK)")
    seed = int(job["seed"])
    model = load(job_dir / "pruned.edgeprune", model=build_model(job["model"], seed, trained=False))
    teacher = None
    if job.get("distill"):
        teacher = build_model(job["model"], seed, trained=False)
        teacher.load_state_dict(load_file(str(job_dir / "teacher.safetensors")))
        teacher.eval()
    train, val = load_data(job["data"], seed=seed, batch_size=job.get("batch_size"), model=model,
                           input_shape=tuple(job["input_shape"]) if job.get("input_shape") else None,
                           val_fraction=job.get("val_fraction", 0.1))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if cuda:  # statistics of the global batch; torch's SyncBatchNorm runs on GPUs only
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # on CPU each rank's BatchNorm normalises its own slice, and DDP gives every rank rank 0's running statistics
    model = model.to(device)
    teacher = teacher.to(device) if teacher is not None else None
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    config = finetune_config(ShardedLoader(train, rank, world, device), epochs=int(job["epochs"]),
                             lr=float(job["lr"]), seed=seed, distill=bool(job.get("distill")))
    evaluate = None
    if job.get("max_drop") is not None and job.get("baseline") is not None:
        score = bind_evaluate(load_callable(job["evaluate"], "--evaluate") if job.get("evaluate") else None, val)

        def evaluate(_wrapped: torch.nn.Module) -> float:  # every rank scores the same weights, on the host
            return score(copy.deepcopy(ddp.module).cpu()) if cuda else score(ddp.module)
    report = fine_tune(ddp, config, teacher=teacher, evaluate=evaluate, baseline=job.get("baseline"),
                       max_drop=job.get("max_drop"), max_epochs=job.get("max_epochs"))
    diff = rank_difference(ddp.module)
    if rank == 0:
        # SyncBatchNorm keeps BatchNorm's state dict keys: the caller's model loads these as they are
        state = {k: v.detach().cpu().contiguous() for k, v in ddp.module.state_dict().items()}
        save_file(state, str(job_dir / f".{WEIGHTS}.tmp"))
        os.replace(job_dir / f".{WEIGHTS}.tmp", job_dir / WEIGHTS)
        out = {"epochs": report.epochs, "steps": report.steps, "seconds": report.seconds, "curve": report.curve,
               "extra_epochs": report.extra_epochs, "guard_met": report.guard_met, "distill": report.distill,
               "world": world, "rank_max_abs_diff": diff}
        (job_dir / f".{RESULT}.tmp").write_text(json.dumps(out))
        os.replace(job_dir / f".{RESULT}.tmp", job_dir / RESULT)
    dist.destroy_process_group()


def _run(job_dir: Path) -> None:
    """``main``, with a failing rank's traceback left in ``JOB_DIR/error-rank-N.txt`` for the caller's message."""
    try:
        main(job_dir)
    except BaseException:
        import traceback

        rank = os.environ.get("RANK", "?")
        (job_dir / f"error-rank-{rank}.txt").write_text(traceback.format_exc())
        raise


if __name__ == "__main__":
    _run(Path(sys.argv[1]))
