"""The pipeline ``edgeprune prune`` runs, from a trained model to a run directory.

    load -> evaluate -> profile before -> choose plan -> fine-tune -> evaluate -> profile after
         (exports the checked ONNX file) -> save the pruned model -> metrics, plan, report

Everything is written into a staging directory that becomes the run directory only when the last
file is in place (see :mod:`edgeprune.run.rundir`). The run directory holds::

    recipe.json        the recipe that reproduces this run (``edgeprune prune --config recipe.json``)
    plan.json          the plan (replayable on a fresh copy of the model)
    model.edgeprune/   the pruned model: architecture spec + plans + safetensors weights
    model.onnx         the pruned model in ONNX, checked against PyTorch in ONNX Runtime
    model.sparse.onnx  (sparse kinds) the same with sparse initializers: the smaller file to ship
    model.int8.*       (--quantize int8) the pruned model in static INT8 for the runtime (.onnx, .tflite,
                       .pte), checked against fake-quant
    model.tflite       (ram=/flash=/--device/--runtime tflm) the file a microcontroller runs, measured in
                       TFLite Micro (model.int8.tflite with --quantize int8; see run/mcu.py)
    metrics.json       before/after figures, targets, guard, search trials, per-layer table, timings
    run.log            what happened, step by step
    report.html        the report, one self-contained file
    COMPLETE           the marker of a finished run
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.run.errors import BadInputError, ExitCode
from edgeprune.run.metrics import METRICS_FORMAT, METRICS_VERSION, json_summary, layer_table, ratios, summary
from edgeprune.run.progress import Progress, SilentProgress
from edgeprune.run.recipe import RunRecipe
from edgeprune.run.rundir import check_out, staged_run

log = logging.getLogger("edgeprune.run")

STEPS = ("load", "evaluate original", "profile original", "choose plan", "fine-tune", "evaluate pruned",
         "profile pruned + export ONNX", "save model", "quantize INT8", "verify on TFLite Micro", "write report")


@dataclass
class RunOutcome:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    exit_code: ExitCode = ExitCode.OK
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return json_summary(self.metrics, str(self.run_dir))


def run_pipeline(recipe: RunRecipe, out: str | Path | None = None, *, force: bool = False,
                 progress: Progress | None = None, notes: list[str] | None = None,
                 hooks: dict[str, Callable[[], None]] | None = None) -> RunOutcome:
    """Run a whole prune: measure, prune to the targets, fine-tune, measure, export, save, report.

    Args:
        recipe: what to do (see :class:`edgeprune.run.recipe.RunRecipe`).
        out: the run directory (default ``recipe.out``).
        force: replace an existing complete run there.
        progress: a listener for step progress (default: silent).
        notes: lines for the report (e.g. why the demo uses a MAC target).
        hooks: ``{step name: callable}`` run when a step starts (tests use it to interrupt a run).

    Returns:
        A :class:`RunOutcome`; its ``exit_code`` is ``NOT_MET`` when a measured target or the
        accuracy guard failed (the run directory is still written, and says so).

    Raises:
        BadInputError: a spec, target or the output directory is wrong (before any work).
        BudgetNotMetError: no plan meets the targets (nothing is written).
        KeyboardInterrupt: passed on after the staging directory is removed.

    Example:
        >>> from edgeprune.run import recipe_from_mapping, run_pipeline
        >>> r = recipe_from_mapping({"model": "digits", "data": "digits", "target": "params=0.5", "epochs": 1})
        >>> outcome = run_pipeline(r, "/tmp/edgeprune-doc-run", force=True)  # doctest: +SKIP
    """
    target = out if out is not None else recipe.out
    if not target:
        raise BadInputError("no run directory: pass --out RUN_DIR (or 'out' in the recipe)")
    check_out(target, force)
    from edgeprune.runtimes import get_runtime

    get_runtime(recipe.runtime).require()  # a missing extra is named before any work
    progress = progress or SilentProgress()
    from edgeprune.run.scale import open_executor

    executor = open_executor(recipe)  # a missing Ray is named before any work
    try:
        with staged_run(target, force=force) as staging, _log_to(staging / "run.log"):
            metrics = _Pipeline(recipe, staging, progress, list(notes or []), dict(hooks or {}), executor).run()
    finally:
        if executor is not None:
            executor.close()
    return RunOutcome(Path(target), metrics, ExitCode(metrics["exit_code"]), list(metrics["notes"]))


class _Pipeline:
    """The steps of one run, sharing the state they build up."""

    def __init__(self, recipe: RunRecipe, staging: Path, progress: Progress, notes: list[str],
                 hooks: dict[str, Callable[[], None]], executor: Any = None) -> None:
        self.recipe, self.dir, self.progress, self.notes, self.hooks = recipe, staging, progress, notes, hooks
        self.executor = executor  # edgeprune.scale: where the strategy's evaluations run (None: here)
        self.timings: dict[str, float] = {}
        self.latency: dict[str, Any] | None = None  # the interleaved before/after (run/verdict.py)
        self.task_figures: dict[str, dict[str, float]] | None = None  # a built-in task's own figures

    @contextmanager
    def step(self, name: str, total: float | None = None) -> Iterator[dict[str, str]]:
        if name in self.hooks:
            self.hooks[name]()
        log.info("step: %s", name)
        self.progress.begin(name, total)
        started = time.perf_counter()
        status = {"note": ""}
        yield status
        seconds = time.perf_counter() - started
        self.timings[name] = round(seconds, 3)
        log.info("done: %s in %.2fs %s", name, seconds, status["note"])
        self.progress.end(name, seconds, status["note"])

    def _task_done(self, name: str, score: Any, finished: int, total: int) -> None:
        """Progress as the executor's tasks finish (in any order)."""
        log.info("task %d/%d done: %s -> %s", finished, total, name, score)
        self.progress.advance(0, f"{self.executor.name}: {finished}/{total} evaluations ({name})")

    def run(self) -> dict[str, Any]:
        from edgeprune.export.saving import save
        from edgeprune.measure.profile import profile
        from edgeprune.run.finetune import fine_tune
        from edgeprune.run.inputs import resolve_inputs
        from edgeprune.run.search import CURVE_RATIOS, choose_plan

        r = self.recipe
        log.info("recipe: %s", json.dumps(r.to_dict()))
        (self.dir / "recipe.json").write_text(json.dumps(r.to_dict(), indent=1) + "\n")
        with self.step("load") as s:
            inputs = resolve_inputs(r.model, r.data, r.evaluate, seed=r.seed, batch_size=r.batch_size,
                                    input_shape=r.input_shape, val_fraction=r.val_fraction)
            s["note"] = f"example input {list(inputs.example.shape)}"
        if r.distill and inputs.loss_fn is not None:
            raise BadInputError(f"distill: the task {r.data!r} recovers with its own loss (it already learns from "
                                f"the unpruned model where it needs to); drop --distill")
        if inputs.evaluate is None:
            self.notes.append("no --data: accuracy is not measured, the model is not fine-tuned and "
                              "--max-drop cannot be checked")
        acc_before = None
        with self.step("evaluate original") as s:
            if inputs.evaluate is not None:
                acc_before = inputs.evaluate(inputs.model)
                s["note"] = f"{acc_before:.2f}%"
        scratch = tempfile.TemporaryDirectory(prefix="edgeprune-run-")  # the original's ONNX, for the verdict
        original_onnx = Path(scratch.name) / "original.onnx"
        with self.step("profile original") as s:
            before = profile(inputs.model, inputs.example, threads=r.threads, runs=r.latency_runs,
                             warmup=max(1, r.latency_runs // 5), torch_latency_too=False, memory=False,
                             name=r.model, onnx_path=original_onnx)
            s["note"] = _lat(before)

        ft_config = None
        if inputs.train is not None and r.epochs > 0:
            from edgeprune.run.finetune import finetune_config

            ft_config = finetune_config(inputs.train, epochs=r.epochs, lr=r.lr, seed=r.seed, distill=r.distill,
                                        loss_fn=inputs.loss_fn)
        curve_points = 0 if r.is_sparse or not r.curve or inputs.evaluate is None else len(CURVE_RATIOS)
        with self.step("choose plan", total=curve_points or None) as s:
            from edgeprune.run.scale import evaluator_for

            outcome = choose_plan(inputs.model, inputs.example, r, evaluate=inputs.evaluate, train=inputs.train,
                                  finetune=ft_config,
                                  on_trial=lambda t: self.progress.advance(1, f"curve: ratio {t.ratio:.2f}"),
                                  evaluator=evaluator_for(self.executor, r, self._task_done), executor=self.executor)
            s["note"] = outcome.method
        dropped = outcome.result.plan.blocks
        if dropped:
            influence = outcome.result.stats.get("influence", {})
            self.notes.append(f"{outcome.method}: " + ", ".join(
                f"{b} (Block Influence {influence[b]:.3f})" if b in influence else b for b in dropped)
                + " replaced by the identity")
        pruned = outcome.result.model
        acc_pruned = None
        if inputs.evaluate is not None and not outcome.finetuned:
            acc_pruned = inputs.evaluate(pruned)
        if inputs.figures is not None:  # a task's own figures (minilm: cosine, retrieval agreement)
            self.task_figures = {"original": inputs.figures(inputs.model)}
            if not outcome.finetuned:
                self.task_figures["pruned_before_finetune"] = inputs.figures(pruned)

        if r.reconstruct and inputs.train is not None:
            with self.step("reconstruct") as s:
                if outcome.finetuned:
                    s["note"] = "skipped: the strategy already fine-tuned between its steps"
                else:
                    from edgeprune.recover import Reconstruct, reconstruct

                    refit = reconstruct(pruned, inputs.model, Reconstruct(data=inputs.train, batches=r.reconstruct))
                    s["note"] = f"{len(refit.layers)} layers refit on {refit.batches} batches"
                    if inputs.evaluate is not None and acc_pruned is not None:  # acc_pruned stays the cut's
                        self.notes.append(f"least-squares reconstruction of {len(refit.layers)} layers: accuracy "
                                          f"{acc_pruned:.2f} -> {inputs.evaluate(pruned):.2f} before fine-tuning")
                    if inputs.figures is not None:
                        self.task_figures["pruned_reconstructed"] = inputs.figures(pruned)

        ft = None
        with self.step("fine-tune") as s:
            if ft_config is not None and r.nproc * r.nnodes > 1:
                from edgeprune.run.scale import fine_tune_distributed

                ft = fine_tune_distributed(pruned, r, inputs.model, baseline=acc_before, already=outcome.finetuned)
                self.notes.append(f"fine-tuned on {ft.world} processes (DistributedDataParallel); the ranks' "
                                  f"parameters differ by at most {ft.rank_max_abs_diff:.3g}")
            elif ft_config is not None:
                ft = fine_tune(pruned, ft_config, teacher=inputs.model, evaluate=inputs.evaluate, baseline=acc_before,
                               max_drop=r.max_drop, max_epochs=r.max_epochs, already=outcome.finetuned)
                s["note"] = ("done by the iterative strategy between its steps" if outcome.finetuned else
                             f"{ft.epochs:g} epochs, {ft.steps} steps" + (", distilled" if ft.distill else ""))
                if ft.extra_epochs:
                    s["note"] += f"; {ft.extra_epochs} more epoch(s) to meet the accuracy guard"
                if ft.extra_epochs:
                    self.notes.append(f"the accuracy guard was not met after {r.epochs} epoch(s): fine-tuned "
                                      f"{ft.extra_epochs} more (up to --max-epochs {r.max_epochs}), "
                                      + ("and it is met" if ft.guard_met else "and it is still missed"))
            elif r.epochs > 0 and inputs.evaluate is not None:
                self.notes.append("not fine-tuned: the data gives no training loader")
        acc_after = None
        with self.step("evaluate pruned") as s:
            if inputs.evaluate is not None:
                acc_after = inputs.evaluate(pruned)
            if inputs.figures is not None:
                self.task_figures["pruned"] = inputs.figures(pruned)
                s["note"] = f"{acc_after:.2f}%"
        with self.step("profile pruned + export ONNX") as s:
            after = profile(pruned, inputs.example, threads=r.threads, runs=r.latency_runs,
                            warmup=max(1, r.latency_runs // 5), torch_latency_too=False, memory=False,
                            onnx_path=self.dir / "model.onnx", check_onnx=True, name=f"{r.model} (pruned)",
                            sparse_exporter=_sparse_exporter(self.dir) if r.is_sparse else None)
            if before.latency_onnx is not None and after.latency_onnx is not None:
                from edgeprune.run.verdict import deploy, interleaved_latency

                pair = deploy(r.runtime, inputs.model, pruned, inputs.example, original_onnx, self.dir)
                self.latency = interleaved_latency(*pair, inputs.example, threads=r.threads, runs=r.latency_runs,
                                                   runtime=r.runtime)
            scratch.cleanup()
            s["note"] = _lat(after) + (f"; interleaved {self.latency['speedup']:.2f}x" if self.latency else "")
            if r.is_sparse:
                from edgeprune.export.onnx import check_onnx

                check_onnx(self.dir / "model.sparse.onnx", pruned, inputs.example)
        with self.step("save model"):
            save(outcome.result, self.dir / "model.edgeprune")
            outcome.result.plan.save(self.dir / "plan.json")
        int8 = None
        if r.quantize == "int8":
            from edgeprune.run.int8 import quantize_step

            with self.step("quantize INT8") as s:
                int8 = quantize_step(self.dir, inputs, pruned, r, acc_dense=acc_before, acc_pruned=acc_after,
                                     macs=(before.macs.total, after.macs.total), notes=self.notes)
                acc_q = int8["stages"]["pruned_int8"]["accuracy"]
                s["note"] = f"{acc_q:.2f}%" if acc_q is not None else ""

        mcu = None
        if r.on_microcontroller:
            from edgeprune.run.mcu import mcu_step

            with self.step("verify on TFLite Micro") as s:
                mcu = mcu_step(self.dir, inputs, pruned, r, self.notes)
                p = mcu["stages"]["pruned"]
                s["note"] = f"arena {p['arena']['total']:,} B, file {p['bytes']:,} B"
        metrics = self._metrics(inputs, before, after, acc_before, acc_pruned, acc_after, outcome, ft, int8, mcu)
        (self.dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default) + "\n")
        with self.step("write report"):
            from edgeprune.report import write_report

            write_report(self.dir)
        log.info("status: %s (exit code %d)", metrics["status"], metrics["exit_code"])
        return metrics

    def _metrics(self, inputs, before, after, acc_before, acc_pruned, acc_after, outcome, ft,
                 int8=None, mcu=None) -> dict[str, Any]:
        from edgeprune.run.search import figures

        r = self.recipe
        b = summary(before, acc_before, sparse=False)
        a = summary(after, acc_after, sparse=r.is_sparse)
        if self.latency is not None:  # the verdict's figures: both models timed in one interleaved session
            b["latency_ms"], a["latency_ms"] = self.latency["original_ms"], self.latency["pruned_ms"]
        a["accuracy_before_finetune"] = acc_pruned
        original = figures(inputs.model, inputs.example)
        final = figures(outcome.result.model, inputs.example)
        checks = []
        for t in r.targets:
            if t.metric == "sparsity":  # of the tensors pruned (protected layers and biases stay dense)
                reached = float(outcome.ratio)
                limit, met = t.value, reached >= t.value - 0.01
            elif t.metric in ("latency", "speedup"):
                lat_b, lat_a = b["latency_ms"], a["latency_ms"]
                limit = t.limit_for(lat_b) if t.metric == "speedup" or t.relative else t.value
                reached, met = lat_a, lat_a is not None and lat_a <= limit
            elif t.metric in ("ram", "flash"):  # judged on the deployed file in TFLite Micro (judge_mcu)
                limit, reached, met = t.value, None, False
            else:
                limit, reached = t.limit_for(original.get(t.metric)), final.get(t.metric)
                met = reached <= limit * (1 + 1e-9)
            checks.append({"target": t.text, "metric": t.metric, "describe": t.describe(), "limit": limit,
                           "reached": reached, "met": bool(met)})
        drop = acc_before - acc_after if acc_before is not None and acc_after is not None else None
        guard = None
        if r.max_drop is not None:
            guard = {"max_drop": r.max_drop, "drop": drop,
                     "passed": None if drop is None else bool(drop <= r.max_drop + 1e-9)}
        if int8 is not None:  # the deployed INT8 file is what the guard and size/latency targets judge
            from edgeprune.run.int8 import judge_int8

            checks, guard = judge_int8(int8, checks, guard, acc_before)
            drop = guard["drop"] if guard is not None else drop
        if mcu is not None:  # the microcontroller's file is what is deployed: it judges memory and the guard
            from edgeprune.run.mcu import judge_mcu

            checks, guard = judge_mcu(mcu, checks, guard, acc_before, r.targets)
            drop = guard["drop"] if guard is not None else drop
        failed = [c["target"] for c in checks if not c["met"]]
        status, code = "ok", ExitCode.OK
        if failed:
            status, code = "target_missed", ExitCode.NOT_MET
            self.notes.append(f"measured figures miss {', '.join(failed)}")
        if guard is not None and guard["passed"] is False:
            status, code = "guard_failed", ExitCode.NOT_MET
            what = f" on {int8['artifact']}" if int8 is not None else ""
            self.notes.append(f"accuracy dropped {drop:.2f} points{what}, more than --max-drop {r.max_drop:g}")
        if r.max_drop is not None and drop is None:
            self.notes.append("--max-drop was not checked: no data to evaluate on")
        if r.is_sparse:
            self.notes.append("sparse weights run on dense kernels: latency is measured as it runs; the gain "
                              "is the smaller model.sparse.onnx file")
        files = sorted(p.name for p in self.dir.iterdir()) + ["metrics.json", "report.html"]
        return {
            "format": METRICS_FORMAT, "version": METRICS_VERSION,
            "status": status, "exit_code": int(code),
            "model": r.model, "data": r.data, "metric": inputs.metric if inputs.evaluate else None,
            "recipe": r.to_dict(),
            "before": b, "after": a, "ratios": ratios(b, a),
            "targets": checks, "guard": guard,
            "search": outcome.to_dict(),
            "finetune": None if ft is None else {"epochs": ft.epochs, "steps": ft.steps, "seconds": ft.seconds,
                                                 "lr": r.lr, "distill": ft.distill, "curve": ft.curve,
                                                 "extra_epochs": ft.extra_epochs, "max_epochs": r.max_epochs,
                                                 "processes": ft.world, "rank_max_abs_diff": ft.rank_max_abs_diff},
            "layers": layer_table(inputs.model, outcome.result.model),
            "skipped": dict(outcome.result.skipped),
            "sensitivity": outcome.sensitivity,
            "profiles": {"before": before.to_dict(), "after": after.to_dict()},
            "latency": self.latency,
            "int8": int8,
            "mcu": mcu,
            "timings": dict(self.timings),
            "task_figures": self.task_figures,
            "notes": list(self.notes),
            "files": sorted(set(files)),
        }


def _sparse_exporter(directory: Path) -> Callable[[Path, Path], object]:
    """Write the sparse ONNX file into the run directory while the profile measures its size
    (the pipeline checks it against PyTorch right after)."""
    from edgeprune.export.sparse_onnx import to_sparse_onnx

    def export(dense: Path, sparse: Path) -> object:
        conversion = to_sparse_onnx(dense, sparse)
        (directory / "model.sparse.onnx").write_bytes(Path(sparse).read_bytes())
        return conversion

    return export


def _lat(p: Any) -> str:
    return f"{p.latency_onnx.median_ms:.3f} ms (ORT median)" if p.latency_onnx else ""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("edgeprune")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except BaseException as exc:
        log.error("run failed: %s: %s", type(exc).__name__, exc)
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
