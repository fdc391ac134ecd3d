"""Fine-tuning on 2 gloo processes (torchrun + DistributedDataParallel): one epoch ends with the same
parameters on both ranks and the same model, to float tolerance, as one process on the same global
batches (distillation included); a rank that dies fails the run by name and leaves no run directory."""
from __future__ import annotations

import copy

import pytest
import torch

from edgeprune.api import prune
from edgeprune.run.finetune import fine_tune, finetune_config
from edgeprune.run.inputs import resolve_inputs
from edgeprune.scale.ddp import DistributedError, Launch, finetune_distributed

TASK = "digits"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # benchmarks/scale.py runs 1 vs 2 gloo ranks and asserts the ranks' parameters agree
def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(one_thread):
    inputs = resolve_inputs(TASK, TASK, seed=0)
    pruned = prune(inputs.model, inputs.example, 0.3).model
    single = copy.deepcopy(pruned)
    job = {"model": TASK, "seed": 0, "data": TASK, "batch_size": None, "input_shape": None, "val_fraction": 0.1,
           "evaluate": None, "epochs": 1, "lr": 1e-3, "distill": True}
    report = finetune_distributed(pruned, Launch(nproc=2), job, teacher=inputs.model, timeout=240)
    fine_tune(single, finetune_config(inputs.train, epochs=1, lr=1e-3, seed=0, distill=True), teacher=inputs.model)

    assert report["world"] == 2 and report["rank_max_abs_diff"] == 0.0  # both ranks hold the same parameters
    assert report["steps"] == len(inputs.train)  # the same optimizer steps as one process
    moved = max(float((a - b).abs().max()) for a, b in zip(pruned.state_dict().values(),
                                                           prune(inputs.model, inputs.example, 0.3).model.state_dict().values()))
    assert moved > 1e-3  # the epoch really changed the weights
    for (name, a), b in zip(pruned.state_dict().items(), single.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert inputs.evaluate(pruned) == pytest.approx(inputs.evaluate(single), abs=100 / 360 + 1e-9)  # <= 1 sample


def test_a_rank_that_dies_fails_the_run_and_leaves_no_run_directory(tmp_path, monkeypatch):
    from edgeprune.run import recipe_from_mapping, run_pipeline

    monkeypatch.setenv("EDGEPRUNE_DDP_FAIL_RANK", "1")
    recipe = recipe_from_mapping({"model": TASK, "data": TASK, "target": "params=0.6", "epochs": 1, "nproc": 2,
                                  "curve": False, "latency_runs": 3})
    out = tmp_path / "run"
    with pytest.raises(DistributedError, match="rank 1 exited with code 1"):
        run_pipeline(recipe, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing that looks like a run, no staging left
