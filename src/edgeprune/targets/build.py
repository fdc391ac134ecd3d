"""Build a latency table for a model: on this machine, or as an op list for the device to time.

Two ways, one format:

* here: :func:`build_table` lists the model's timed layers, writes the calibration models as ONNX,
  and runs ``lut_builder`` in this process (this machine is the target);
* on a device: :func:`write_ops` writes ``ops.json`` + those ONNX files + a copy of
  ``lut_builder.py`` into a folder; copy it to the device and run
  ``python lut_builder.py ops.json --out table.json`` there (onnxruntime and numpy only).

Example:
    >>> import torch, torchvision
    >>> m, x = torchvision.models.resnet18(), torch.randn(1, 3, 96, 96)
    >>> table = build_table(m, x, threads=2, levels=4)      # doctest: +SKIP
    >>> table.save("resnet18-96.json")                      # doctest: +SKIP
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeprune.criteria import ScoreContext, get_criterion
from edgeprune.graph import analyze
from edgeprune.graph.groups import Group
from edgeprune.plan import Plan
from edgeprune.specs import ExampleInputs, split_inputs
from edgeprune.strategies.base import lowest, make_plan
from edgeprune.surgery import apply_plan, named_tensors
from edgeprune.targets.allocate import allocate
from edgeprune.targets import lut_builder
from edgeprune.targets.layers import LayerSpec, model_key, timed_layers
from edgeprune.targets.table import LatencyTable


@dataclass(frozen=True)
class TableConfig:
    """How a table is built.

    Attributes:
        runtime: the runtime the table is timed on (``lut_builder.RUNTIMES``): its single-op graphs
            and the calibration models run there.
        threads: the runtime's worker threads on the target.
        runs: timed runs per point (and per calibration model).
        warmup: untimed runs before them.
        stat: statistic of the timed runs: ``"median"`` on a quiet device, ``"min"`` on a machine
            shared with other work (preemption only ever adds time).
        passes: time the whole table this many times and keep each point's smallest figure
            (2-3 on a shared machine: a burst of load hits one pass, not all).
        spinning: ONNX Runtime's default; ``False`` makes idle worker threads block (on a machine
            shared with other work: see ``edgeprune.targets.measured``). Points and models alike.
        probe_threads: threads of the staircase sweeps (default ``threads``; 1 on a busy machine,
            where a 2-thread point that never got both cores looks like a random step).
        levels: at most this many timed kept counts per group (on its fast steps).
        min_keep: the smallest kept fraction timed (below it the table extrapolates).
        calibrate: kept fractions of the calibration models (uniform, counts rounded to
            ``calibrate_round``); the unpruned model is always one.
        calibrate_round: channel multiple of the calibration models.
        calibrate_latency: fractions of the unpruned model's (uncalibrated) predicted latency at
            which the latency allocator makes more calibration models. The allocator picks the cuts
            the single-op table rates most profitable, and on MobileNets those save less inside the
            model than alone (measured: plans 11-25% slower than a calibration on uniform keeps
            predicts, more so the deeper the cut); calibrating on such plans too keeps the
            predictions of the plans it makes within a few percent, at the cost of a few percent on
            uniform ones.
        rounds: interleaved rounds of the whole-model measurements (``edgeprune.targets.measured``).
        probe_channels: the channel range of the staircase sweeps (``None``: the back end's default,
            40-97; a narrow range finds no staircase and is only for quick checks).
        precision: the kernels the table times, ``"float32"`` or ``"int8"`` (the run quantizes:
            int8 convolutions step differently). An int8 table times the back end's int8 single-op
            graphs, and its calibration models are the INT8 files the run's quantizer makes of them
            (``edgeprune.quantize.files``). ONNX Runtime, LiteRT, ExecuTorch and OpenVINO.
    """

    runtime: str = "onnxruntime"
    threads: int = 2
    runs: int = 15
    warmup: int = 3
    stat: str = "median"
    passes: int = 1
    spinning: bool = True
    probe_threads: int | None = None
    levels: int = 8
    min_keep: float = 0.25
    calibrate: tuple[float, ...] = (0.75, 0.5)
    calibrate_round: int = 16
    calibrate_latency: tuple[float, ...] = (0.85, 0.55)
    rounds: int = 20
    probe_channels: tuple[int, int] | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        from edgeprune.targets.table import TableError

        if self.precision not in lut_builder.PRECISIONS:
            raise TableError(f"TableConfig.precision must be one of {', '.join(lut_builder.PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.precision == "int8" and self.runtime not in INT8_TABLE_RUNTIMES:
            raise TableError(f"an int8 latency table is timed on {', '.join(INT8_TABLE_RUNTIMES)}; "
                             f"{self.runtime} has no INT8 path in edgeprune")


INT8_TABLE_RUNTIMES = ("onnxruntime", "litert", "executorch", "openvino")


def write_ops(model: nn.Module, example_inputs: ExampleInputs, folder: str | Path,
              config: TableConfig = TableConfig(), criterion: str = "l2") -> Path:
    """Write what a device needs to build the table: ``ops.json``, the calibration models in the
    runtime's format (``config.runtime``), ``lut_builder.py`` and the runtime's back end beside it.

    Returns:
        The path of ``ops.json``.

    Raises:
        TableError: the runtime's table can only be built on the host (ExecuTorch).
    """
    from edgeprune.runtimes import get_runtime
    from edgeprune.targets.table import TableError

    if config.runtime not in lut_builder.DEVICE_RUNTIMES:
        raise TableError(f"a {config.runtime} latency table is built on the host only (its single-op files need "
                         f"torch to write); device-side builders: {', '.join(lut_builder.DEVICE_RUNTIMES)}")
    rt = get_runtime(config.runtime)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups, layers = _groups_and_layers(model, example_inputs)
    models = {}
    args, kwargs = split_inputs(example_inputs)
    shapes = [list(t.shape) for t in list(args) + list(kwargs.values())]
    from edgeprune.runtimes.timing import export_artifact

    for name, counts, pruned in calibration_models(model, example_inputs, groups, config, criterion):
        path = export_artifact(rt.name, pruned, example_inputs, folder, name, config.precision)
        models[name] = {"file": path.name, "counts": counts, "input_shapes": shapes}
    doc = ops_document(model_key(model, example_inputs), groups, layers, config, models, _weight_bytes(model))
    lut_builder.write_json(doc, str(folder / "ops.json"))
    shutil.copyfile(lut_builder.__file__, folder / "lut_builder.py")
    if config.runtime != "onnxruntime":
        source = Path(lut_builder.backend(config.runtime).__file__)
        shutil.copyfile(source, folder / source.name)
    return folder / "ops.json"


def build_table(model: nn.Module, example_inputs: ExampleInputs, config: TableConfig = TableConfig(), *,
                criterion: str = "l2", log: Callable[[str], None] | None = None) -> LatencyTable:
    """Build the latency table of ``model`` on this machine (the target), calibration included.

    Args:
        model: the unpruned model (not changed).
        example_inputs: its input at the deployed shape, batch 1.
        config: threads, runs, grid size (:class:`TableConfig`).
        criterion: which units the calibration models drop (their latency hardly depends on it).
        log: progress lines go here.

    Returns:
        The :class:`LatencyTable`; ``table.save(path)`` writes its JSON. With
        ``config.precision="int8"`` its points are int8 kernels and its calibration models the
        models' INT8 files (``table.precision`` says so).
    """
    import json

    from edgeprune.runtimes.timing import measure_models

    groups, layers = _groups_and_layers(model, example_inputs)
    doc = ops_document(model_key(model, example_inputs), groups, layers, config, {}, _weight_bytes(model))
    doc = lut_builder.build(doc, threads=config.threads, runs=config.runs, warmup=config.warmup,
                            stat=config.stat, passes=config.passes, spinning=config.spinning,
                            probe_threads=config.probe_threads, log=log, runtime=config.runtime,
                            probe_channels=config.probe_channels, precision=config.precision)
    table = LatencyTable.from_dict(json.loads(json.dumps(doc)))
    variants = list(calibration_models(model, example_inputs, groups, config, criterion, table))
    ort = config.runtime == "onnxruntime"
    measured = measure_models({name: m for name, _, m in variants}, example_inputs, runtime=config.runtime,
                              threads=config.threads, rounds=config.rounds, runs=5, fresh=ort and config.spinning,
                              open_options={"spin": False} if ort else None, precision=config.precision)
    for name, counts, _ in variants:
        table.measured[name] = {"counts": counts, "ms": round(measured[name].ms, 5)}
        if log:
            log(f"model {name}: {measured[name].ms:.3f} ms (rounds spread {measured[name].spread:.0%})")
    return table


def ops_document(key: str, groups: Sequence[Group], layers: Sequence[LayerSpec], config: TableConfig,
                 models: Mapping[str, Any], weight_bytes: int = 0) -> dict[str, Any]:
    """The ``ops.json`` document ``lut_builder`` reads (``weight_bytes``: the model's parameter bytes)."""
    used = {n for layer in layers for n in (layer.in_group, layer.out_group) if n}
    doc = {"format": lut_builder.OPS_FORMAT, "version": lut_builder.FORMAT_VERSION, "model": key,
            "levels": config.levels, "min_keep": config.min_keep, "weight_bytes": int(weight_bytes),
            "groups": {g.name: {"size": g.size, "partitions": g.partitions} for g in groups if g.name in used},
            "layers": [{"spec": layer.to_dict(), "signature": layer.signature, "family": layer.family,
                        "op": layer.op_dict(), "c_in": layer.c_in, "c_out": layer.c_out,
                        "in_group": layer.in_group, "out_group": layer.out_group} for layer in layers],
            "models": dict(models), "precision": config.precision}
    if config.probe_channels is not None:
        doc["probe_channels"] = list(config.probe_channels)
    return doc


def calibration_models(model: nn.Module, example_inputs: ExampleInputs, groups: Sequence[Group],
                       config: TableConfig, criterion: str = "l2", table: LatencyTable | None = None):
    """Yield ``(name, counts, pruned model)``: the unpruned model, uniform keeps of ``config.calibrate``
    and, given the (uncalibrated) ``table``, the allocator's plans at ``config.calibrate_latency``
    of its predicted unpruned latency (those it cannot reach are left out)."""
    from edgeprune.budget import BudgetError
    from edgeprune.targets.predictor import Calibration, LatencyPredictor

    yield "dense", {}, model
    scores = group_scores(model, groups, criterion)
    tensors = named_tensors(model)
    r = config.calibrate_round
    for keep in config.calibrate:
        counts = {g.name: min(g.size, max(r, round(g.size * keep / r) * r)) for g in groups}
        plan = counts_plan(groups, scores, counts, tensors)
        yield f"uniform-{keep:g}", counts, apply_plan(model, plan)
    if table is None:
        return
    raw = LatencyPredictor(table)
    raw.calibration = Calibration()  # the raw table sum: what was measured so far does not move the plans
    for fraction in config.calibrate_latency:
        try:
            counts = allocate(raw, groups, scores, raw.dense_ms() * fraction).counts
        except BudgetError:
            continue
        plan = counts_plan(groups, scores, counts, tensors)
        yield f"latency-{fraction:g}", counts, apply_plan(model, plan)


def group_scores(model: nn.Module, groups: Sequence[Group], criterion: str = "l2") -> dict[str, torch.Tensor]:
    """Unit scores of every group by a weight-only criterion."""
    score = get_criterion(criterion)
    ctx = ScoreContext(named_tensors(model))
    return {g.name: score(g, ctx) for g in groups}


def counts_plan(groups: Sequence[Group], scores: Mapping[str, torch.Tensor], counts: Mapping[str, int],
                tensors: Mapping[str, torch.Tensor], meta: dict[str, Any] | None = None) -> Plan:
    """A plan in which each group keeps ``counts[group]`` units (its highest scores); others keep all."""
    removals = {}
    for g in groups:
        keep = counts.get(g.name, g.size)
        if keep < g.size:
            removals[g.name] = lowest(scores[g.name], g.size - keep, g.partitions)
    return make_plan(list(groups), removals, dict(tensors), meta=meta)


def _groups_and_layers(model: nn.Module, example_inputs: ExampleInputs) -> tuple[list[Group], list[LayerSpec]]:
    groups = analyze(model, example_inputs).groups
    return groups, timed_layers(model, example_inputs, groups)


def _weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
