"""Evaluations as tasks: on a local 2-CPU Ray cluster a sensitivity scan, the sensitivity strategy and
a guarded search give exactly the serial run's curves and plans; a task that raises is retried and
then reported by name; latency is refused where no node declares the runtime; without Ray the
executor is refused with the pip command. The cluster is shut down when the module ends."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray
import torch

import edgeprune as ep
from edgeprune.budget import Budget
from edgeprune.criteria import get_criterion
from edgeprune.run.inputs import resolve_inputs
from edgeprune.scale import Evaluator, ExecutorError, SerialExecutor, TaskFailed, get_executor
from edgeprune.scale.ray_executor import RayExecutor
from edgeprune.strategies import Guarded, Sensitivity
from edgeprune.strategies.sensitivity import scan
from edgeprune.strategies.session import Session

TASK = "mnist1d"  # BatchNorm in every block: the recalibration travels too
RATIOS = (0.25, 0.5)


@pytest.fixture(scope="module")
def cluster():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run at 1 thread too: the same kernels, the same sums
    executor = RayExecutor(threads=1, num_cpus=2, retries=1, runtimes=())  # a node without the runtime's device
    yield executor
    executor.close()
    torch.set_num_threads(threads)
    assert not ray.is_initialized()


def _inputs():
    """Fresh inputs per run: a shuffling train loader's order depends on how often it was read."""
    return resolve_inputs(TASK, TASK, seed=0)


def _scan(evaluator=None):
    inp = _inputs()
    session = Session(inp.example, get_criterion("l2"), "l2", data=inp.train, evaluate=inp.evaluate,
                      evaluator=evaluator)
    return scan(session, inp.model, session.score(inp.model), RATIOS)


@pytest.mark.slow  # benchmarks/scale.py runs this scan serially and on 2 Ray workers and asserts identical curves
def test_sensitivity_scan_on_ray_gives_the_serial_curves_with_progress(cluster):
    done = []
    curves = _scan(Evaluator(cluster, TASK, on_done=lambda name, score, k, n: done.append((name, score, k, n))))
    serial = _scan()
    assert curves.to_dict() == serial.to_dict()
    assert len(done) == sum(len(set(c.removed) - {0}) for c in serial.groups.values())
    assert [k for _, _, k, _ in done] == list(range(1, len(done) + 1)) and done[-1][3] == len(done)
    assert {score for _, score, _, _ in done} <= {a for c in serial.groups.values() for a in c.accuracy}


@pytest.mark.parametrize("strategy, budget", [
    (Guarded(iterations=4), Budget(max_drop=2.0)),
    (Sensitivity(ratios=RATIOS), Budget.parse("macs=0.7")),
])
def test_strategies_on_ray_give_the_serial_plan(cluster, strategy, budget):
    results = []
    for evaluator in (Evaluator(cluster, TASK), None):
        inp = _inputs()
        results.append(ep.prune(inp.model, inp.example, budget=budget, strategy=strategy, data=inp.train,
                                evaluate=inp.evaluate, evaluator=evaluator))
    on_ray, serial = results
    assert on_ray.plan.to_dict() == serial.plan.to_dict()
    assert on_ray.plan.removed_units > 0
    details_ray, details_serial = on_ray.stats["details"], serial.stats["details"]
    for key in ("trials", "curves", "candidates", "chosen"):
        assert details_ray.get(key) == details_serial.get(key)
    assert on_ray.stats["accuracy_after"] == serial.stats["accuracy_after"]  # the same recalibrated weights


def test_a_raising_task_is_retried_then_reported_by_name(cluster, tmp_path):
    attempts = tmp_path / "attempts"

    def fails(shared, item):  # a closure: pickled by value, so the worker needs no test module
        with open(shared, "a") as f:
            f.write(f"{item}\n")
        if item == "bad":
            raise RuntimeError("this candidate cannot be measured")
        return item.upper()

    with pytest.raises(TaskFailed, match="task 'the bad one' failed after 2 attempt") as err:
        cluster.map(fails, str(attempts), ["ok", "bad"], ["the good one", "the bad one"])
    assert err.value.name == "the bad one" and "cannot be measured" in err.value.cause
    assert attempts.read_text().splitlines().count("bad") == 2  # ran, then retried once

    flaky = tmp_path / "flaky"

    def fails_once(shared, item):
        first = not Path(shared).exists()
        Path(shared).write_text("seen")
        if first:
            raise RuntimeError("transient")
        return item * 2

    assert cluster.map(fails_once, str(flaky), [21], ["flaky"]) == [42]  # the retry's result, not dropped
    with pytest.raises(TaskFailed, match="'bad'"):  # the serial executor reports the same way
        SerialExecutor(retries=1).map(fails, str(attempts), ["bad"], ["bad"])


def test_latency_is_refused_where_no_node_declares_the_runtime(cluster):
    from edgeprune.run import recipe_from_mapping
    from edgeprune.run.search import choose_plan

    with pytest.raises(ExecutorError, match="runtime:onnxruntime"):
        cluster.on_runtime("onnxruntime", lambda shared, item: item, None, 1)
    recipe = recipe_from_mapping({"model": TASK, "data": TASK, "target": "speedup=1.5x", "threads": 1})
    inp = _inputs()
    with pytest.raises(ExecutorError, match="declares the resource 'runtime:onnxruntime'"):  # never timed here
        choose_plan(inp.model, inp.example, recipe, evaluate=inp.evaluate, train=inp.train, executor=cluster)


def test_ray_executor_is_refused_without_ray_with_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'edgeprune\[ray\]'"):
        get_executor("ray")
    with pytest.raises(ExecutorError, match="unknown executor"):
        get_executor("dask")
    assert isinstance(get_executor(None), SerialExecutor)


def test_cli_refuses_executor_ray_without_ray_before_any_work(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from edgeprune.cli import _register_commands, app

    _register_commands()
    monkeypatch.setitem(sys.modules, "ray", None)
    for args in (["prune", TASK, "--data", TASK, "--target", "macs=0.7", "--strategy", "sensitivity",
                  "--executor", "ray", "--out", str(tmp_path / "run")],
                 ["analyze", TASK, "--data", TASK, "--executor", "ray"]):
        got = CliRunner().invoke(app, args, catch_exceptions=False)
        assert got.exit_code == 2, got.output
        assert "pip install 'edgeprune[ray]'" in got.output.replace("\n", "")
    assert not (tmp_path / "run").exists()


def test_a_sweep_on_ray_runs_every_point_as_the_serial_pipeline_would(cluster, tmp_path):
    from edgeprune.run import is_complete, recipe_from_mapping
    from edgeprune.run.search import choose_plan
    from edgeprune.scale.sweep import SweepError, parse_grid, run_sweep

    base = {"model": "digits", "data": "digits", "target": ["params=0.6"], "epochs": 1, "latency_runs": 3,
            "curve": False, "threads": 1, "strategy": "global"}
    with pytest.raises(Exception, match="nonsense"):  # every point is validated before any run
        run_sweep(base, ["nonsense=1,2"], tmp_path / "bad")
    with pytest.raises(SweepError, match="twice"):
        parse_grid(["seed=0", "seed=1"])
    done = []
    rows = run_sweep(base, ["criterion=l2,l1"], tmp_path / "sweep", executor=cluster,
                     on_done=lambda name, row, k, n: done.append(name))
    assert sorted(done) == ["criterion=l1", "criterion=l2"]
    assert [r["point"] for r in rows] == [{"criterion": "l2"}, {"criterion": "l1"}]
    assert all(r["status"] == "ok" and is_complete(r["run_dir"]) for r in rows)
    recipe = recipe_from_mapping({**base, "criterion": "l1"})  # the serial choice of the same point
    inputs = resolve_inputs(recipe.model, recipe.data, seed=recipe.seed)
    serial = choose_plan(inputs.model, inputs.example, recipe, evaluate=inputs.evaluate, train=inputs.train)
    assert json.loads((Path(rows[1]["run_dir"]) / "plan.json").read_text()) == serial.result.plan.to_dict()
    assert (tmp_path / "sweep" / "sweep.json").is_file()
