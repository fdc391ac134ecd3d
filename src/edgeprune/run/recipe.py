"""The run recipe: everything ``edgeprune prune`` does, as one typed, validated object.

A recipe comes from command-line flags, from a YAML or TOML file (``--config recipe.yaml``), or
both (flags given on the command line override the file). Keys are the flag names, with ``-`` or
``_``; unknown keys are refused by name, and every value is checked against its field's type::

    model: mnist                 # a built-in task, torchvision:NAME, timm:NAME, pkg.mod:factory, file.py:factory
    data: mnist                  # a built-in task, an image folder, or pkg.mod:function returning loaders
    target: [macs=0.5]           # or one string, or a mapping {macs: 0.5, size: 4MB}
    max_drop: 1.0                # accuracy points the run may lose (exit code 3 beyond it)
    kind: channels               # channels | weights | 2:4
    epochs: 2
"""
from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from edgeprune.budget.terms import LATENCY_METRICS, BudgetSyntaxError, Term, parse_term, parse_terms
from edgeprune.run.errors import BadInputError

KINDS = ("channels", "blocks", "weights")  # and any N:M pattern such as "2:4"
QUANTIZE = (None, "int8")
_NM = re.compile(r"^(\d+):(\d+)$")


class RecipeError(BadInputError):
    """A recipe field is unknown, of the wrong type, or out of range; the message names the field."""


@dataclass(frozen=True)
class RunRecipe:
    """What one ``edgeprune prune`` run does.

    Attributes:
        model: the model spec (a built-in task name means its pretrained model).
        data: the data spec; without it there is no accuracy, fine-tuning or guard.
        evaluate: ``pkg.mod:function`` or ``file.py:function`` with ``f(model, loader) -> percent``;
            top-1 accuracy by default.
        target: targets such as ``macs=0.5``, ``size=4MB``, ``sparsity=0.9``, ``speedup=2x``.
        max_drop: accuracy points (percent) the pruned model may lose; ``None``: no guard.
        kind: ``channels`` (structured), ``weights`` (unstructured sparsity) or an N:M pattern.
        strategy: how units are allocated across groups (``uniform``, ``global``, ...).
        criterion: unit scores (``l2``, ``l1``, ``taylor``, ...).
        round_to: keep channel counts at multiples of this.
        ignore: module name globs whose outputs keep every unit.
        reconstruct: before fine-tuning, refit the Linears that read the cut by least squares on this
            many batches of the training data so their outputs match the original's
            (``edgeprune.recover.reconstruct``); 0: none.
        epochs: fine-tuning epochs after pruning (0: none).
        max_epochs: with ``max_drop``, fine-tuning goes on one epoch at a time until the guard is met,
            up to this many epochs in all (``edgeprune.recover.goal``).
        lr: fine-tuning peak learning rate.
        distill: fine-tune against the unpruned model's outputs too (knowledge distillation).
        batch_size: batch size of data loaders a data spec builds (``None``: its default).
        seed: seeds pruning choices, fine-tuning and the built-in model's weights.
        threads: intra-op threads for latency measurements (and latency targets).
        latency_runs: timed runs per latency measurement.
        runtime: the runtime the pruned model is deployed on: its artifact is written into the run
            (checked against PyTorch) and the before/after latency and verdict are measured on it
            (``onnxruntime``, ``litert``, ``executorch``, ``openvino``); so are the latency table
            and the latency-aware allocation of a latency target.
        input_shape: example input shape, batch first (``None``: from the data or the model).
        val_fraction: share of an image folder held out for validation when it has no ``val/``.
        curve: evaluate the candidate plans of the search, to draw accuracy against MACs.
        quantize: ``"int8"``: after pruning and fine-tuning, static INT8 for the runtime
            (``model.int8.onnx``, ``model.int8.tflite``, ``model.int8.pte`` or ``model.int8.xml``);
            the guard and the size and latency targets are then judged on it.
        calibration_batches: batches of the training data (validation without one) that calibrate INT8.
        device: a microcontroller profile (``cortex-m4``, ``edgeprune.targets.devices``): adds
            ``ram=`` (its SRAM) and ``flash=`` (its flash, the runtime's code allowance counted)
            unless the targets give them; the deployed ``.tflite`` is then verified in TFLite Micro.
        executor: where the strategies' candidate evaluations run: ``serial`` (here), ``ray`` (a
            local Ray cluster), ``auto`` (the running cluster) or ``ray://HOST:PORT`` (``edgeprune.scale``).
        nproc: fine-tuning processes on this node (torchrun, DistributedDataParallel); 1: none.
        nnodes: nodes of the distributed fine-tuning (run the same command on each).
        rdzv_endpoint: ``HOST:PORT`` where the nodes meet (with ``nnodes > 1``).
        out: the run directory.
    """

    model: str
    data: str | None = None
    evaluate: str | None = None
    target: tuple[str, ...] = ()
    max_drop: float | None = None
    kind: str = "channels"
    strategy: str = "uniform"
    criterion: str = "l2"
    round_to: int = 1
    ignore: tuple[str, ...] = ()
    reconstruct: int = 0
    epochs: int = 1
    max_epochs: int = 10
    lr: float = 1e-3
    distill: bool = False
    batch_size: int | None = None
    seed: int = 0
    threads: int = 2
    latency_runs: int = 50
    runtime: str = "onnxruntime"
    input_shape: tuple[int, ...] | None = None
    val_fraction: float = 0.1
    curve: bool = True
    quantize: str | None = None
    calibration_batches: int = 8
    device: str | None = None
    executor: str = "serial"
    nproc: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    out: str | None = None

    @property
    def targets(self) -> list[Term]:
        """The parsed targets (the budget vocabulary's terms, ``edgeprune.budget.terms``)."""
        try:
            terms = parse_terms(self.target)
        except BudgetSyntaxError as exc:
            raise BadInputError(str(exc)) from None
        if self.device:  # the device's limits, where the targets do not set them
            from edgeprune.targets.devices import get_device

            d, given = get_device(self.device), {t.metric for t in terms}
            terms += [Term(m, float(v), False, f"{m}={v}B ({d.name})")
                      for m, v in (("ram", d.sram), ("flash", d.flash)) if m not in given]
        return terms

    @property
    def on_microcontroller(self) -> bool:
        """Whether the run is judged in TFLite Micro (a ``ram=``/``flash=`` target, ``--device`` or ``--runtime tflm``)."""
        return self.runtime == "tflm" or any(t.metric in ("ram", "flash") for t in self.targets)

    @property
    def is_sparse(self) -> bool:
        """Whether the run masks weights (unstructured or N:M) instead of removing channels or blocks."""
        return self.kind not in ("channels", "blocks")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that :func:`recipe_from_mapping` turns back into this recipe."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}


def recipe_from_mapping(data: Mapping[str, Any], source: str = "recipe") -> RunRecipe:
    """Build and validate a recipe from a mapping (a parsed file, or flags).

    Args:
        data: field name (``-`` or ``_``) -> value.
        source: where the mapping came from, for error messages (a file name).

    Returns:
        The validated :class:`RunRecipe`.

    Raises:
        RecipeError: an unknown key, a missing ``model``, a value of the wrong type or out of
            range, or fields that do not go together; the message names the field.

    Example:
        >>> recipe_from_mapping({"model": "mnist", "target": "macs=0.5", "max-drop": 1}).max_drop
        1.0
    """
    if not isinstance(data, Mapping):
        raise RecipeError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    hints = typing.get_type_hints(RunRecipe)
    names = {f.name for f in dataclasses.fields(RunRecipe)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name == "targets":
            name = "target"
        if name not in names:
            close = [n for n in sorted(names) if n[:3] == name[:3]]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(f"{source}: unknown field {key!r}{hint}; known fields: {', '.join(sorted(names))}")
        if name == "target":
            value = _target_list(value, source)
        values[name] = _coerce(value, hints[name], f"{source}: field {name!r}")
    if "model" not in values or not values["model"]:
        raise RecipeError(f"{source}: field 'model' is required (a model spec such as mnist or torchvision:resnet18)")
    recipe = RunRecipe(**values)
    validate(recipe, source)
    return recipe


def load_recipe(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunRecipe:
    """Read a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON recipe file.

    Args:
        path: the file.
        overrides: fields that replace the file's (command-line flags the user gave).

    Returns:
        The validated :class:`RunRecipe`.

    Raises:
        RecipeError: the file is missing, does not parse, or holds a bad field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a text file (not UTF-8: {exc.reason} at byte {exc.start})") from None
    data = _parse(text, path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RecipeError(f"{path}: a recipe is a mapping of fields, not a {type(data).__name__}")
    merged = {str(k).replace("-", "_"): v for k, v in data.items()}
    merged.update({k.replace("-", "_"): v for k, v in (overrides or {}).items()})
    return recipe_from_mapping(merged, source=str(path))


def validate(recipe: RunRecipe, source: str = "recipe") -> None:
    """Check values and combinations that types alone do not catch.

    Raises:
        RecipeError: naming the field.
    """
    from edgeprune.criteria import CRITERIA
    from edgeprune.strategies import PRESETS as STRATEGIES

    def bad(name: str, why: str) -> RecipeError:
        return RecipeError(f"{source}: field {name!r} {why}")

    if recipe.kind not in KINDS and not _valid_nm(recipe.kind):
        raise bad("kind", f"is {recipe.kind!r}; use channels, blocks, weights, or an N:M pattern such as 2:4")
    if recipe.strategy not in STRATEGIES:
        raise bad("strategy", f"is {recipe.strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    if recipe.criterion not in CRITERIA:
        raise bad("criterion", f"is {recipe.criterion!r}; choose one of {', '.join(sorted(CRITERIA))}")
    if recipe.quantize not in QUANTIZE:
        raise bad("quantize", f"is {recipe.quantize!r}; the one choice is int8 (or leave it out)")
    if recipe.quantize and not recipe.data:
        raise bad("quantize", "needs --data: INT8 is calibrated on the user's data and its accuracy measured on it")
    if recipe.reconstruct and not recipe.data:
        raise bad("reconstruct", "needs --data: the layers are refit on batches of the training data")
    for name, low in (("reconstruct", 0), ("epochs", 0), ("max_epochs", 0), ("round_to", 1), ("threads", 1), ("latency_runs", 1),
                      ("seed", 0), ("calibration_batches", 1), ("nproc", 1), ("nnodes", 1)):
        if getattr(recipe, name) < low:
            raise bad(name, f"must be >= {low}, got {getattr(recipe, name)}")
    if recipe.lr <= 0:
        raise bad("lr", f"must be positive, got {recipe.lr}")
    if recipe.executor not in ("serial", "ray", "auto") and not recipe.executor.startswith("ray://"):
        raise bad("executor", f"is {recipe.executor!r}; use serial, ray, auto or ray://HOST:PORT")
    if recipe.nnodes > 1 and not recipe.rdzv_endpoint:
        raise bad("rdzv_endpoint", "is needed with nnodes > 1: HOST:PORT where the nodes meet")
    from edgeprune.runtimes import UnknownRuntimeError, get_runtime

    try:
        get_runtime(recipe.runtime)
    except UnknownRuntimeError as exc:
        raise bad("runtime", str(exc)) from None
    if recipe.device is not None:
        from edgeprune.targets.devices import UnknownDeviceError, get_device

        try:
            get_device(recipe.device)
        except UnknownDeviceError as exc:
            raise bad("device", str(exc)) from None
    if recipe.max_drop is not None and recipe.max_drop < 0:
        raise bad("max_drop", f"must be >= 0 accuracy points, got {recipe.max_drop}")
    if recipe.batch_size is not None and recipe.batch_size < 1:
        raise bad("batch_size", f"must be >= 1, got {recipe.batch_size}")
    if not 0 < recipe.val_fraction < 1:
        raise bad("val_fraction", f"must be between 0 and 1, got {recipe.val_fraction}")
    if recipe.input_shape is not None and (not recipe.input_shape or min(recipe.input_shape) < 1):
        raise bad("input_shape", f"must be positive sizes, batch first, got {list(recipe.input_shape)}")
    if recipe.input_shape is not None:
        from edgeprune.specs import SpecError, check_input_size

        try:
            check_input_size(recipe.input_shape)
        except SpecError as exc:
            raise bad("input_shape", str(exc)) from None
    try:
        targets = recipe.targets
    except BadInputError as exc:
        raise RecipeError(f"{source}: field 'target': {exc}") from None
    _check_targets(recipe, targets, bad)
    if recipe.is_sparse:
        _check_weight_criterion(recipe, bad)


def _check_weight_criterion(recipe: RunRecipe, bad) -> None:
    from edgeprune.weights.config import weight_criterion

    try:
        weight_criterion(recipe.criterion)
    except ValueError:
        raise bad("criterion", f"is {recipe.criterion!r}, which has no per-weight form: --kind {recipe.kind} "
                               "ranks single weights by magnitude (l1, l2), taylor or fisher") from None


def _check_targets(recipe: RunRecipe, targets: list[Term], bad) -> None:
    metrics = {t.metric for t in targets}
    if recipe.kind == "channels":
        if "sparsity" in metrics:
            raise bad("target", "sparsity=... needs --kind weights (or 2:4); channel pruning removes whole "
                                "channels: use macs=, params=, size= or speedup=")
        if metrics & {"ram", "flash"} and metrics & set(LATENCY_METRICS):
            raise bad("target", "ram=/flash= and a latency target do not go together (TFLite Micro's host "
                                "interpreter gives no device latency)")
        if not targets:
            raise bad("target", "is missing: give at least one, e.g. macs=0.5, params=0.5, size=4MB or speedup=2x")
    elif recipe.kind == "blocks":
        if not targets or metrics - {"macs", "params", "size", *LATENCY_METRICS}:
            raise bad("target", "with --kind blocks takes macs=, params=, size=, latency= or speedup= (the fewest "
                                "residual blocks that meet it are dropped, least Block Influence first)")
        if metrics & set(LATENCY_METRICS) and len(targets) > 1:
            raise bad("target", "with --kind blocks, a latency target stands alone (one target)")
    elif recipe.kind == "weights":
        if metrics != {"sparsity"}:
            raise bad("target", "with --kind weights takes exactly sparsity=FRACTION (masked weights make the "
                                "model no faster or smaller in memory; only its sparse file shrinks)")
    else:  # N:M
        n, m = map(int, recipe.kind.split(":"))
        if metrics - {"sparsity"} or any(abs(t.value - (1 - n / m)) > 1e-9 for t in targets):
            raise bad("target", f"with --kind {recipe.kind} is fixed at sparsity={1 - n / m:g}; omit it")
    if metrics & set(LATENCY_METRICS) and recipe.is_sparse:
        raise bad("target", "latency targets need --kind channels or blocks (sparse weights do not run faster)")


def _valid_nm(kind: str) -> bool:
    match = _NM.match(kind)
    return bool(match) and 0 < int(match.group(1)) < int(match.group(2))


def _target_list(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v for v in re.split(r"[,\s]+", value) if v)
    if isinstance(value, Mapping):
        return tuple(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise RecipeError(f"{source}: field 'target' must be a string, a list or a mapping, got {value!r}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint (str, int, float, bool, tuples, Optional) and convert gently."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v for v in re.split(r"[,x\s]+" if item is int else r"[,\s]+", value) if v]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, item, f"{where} item {i}") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise RecipeError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise RecipeError(f"{where} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise RecipeError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise RecipeError(f"{where} must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise RecipeError(f"{where} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"recipe field type {hint!r} is not handled")  # a new field needs a rule here


def _parse(text: str, path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
    except Exception as exc:  # each parser has its own error type; all mean "does not parse"
        raise RecipeError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    raise RecipeError(f"{path}: unknown recipe format {suffix!r}; use .yaml, .yml, .toml or .json")


RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecipe))


def parse_target(text: str) -> Term:
    """One ``METRIC=VALUE`` target of a recipe (``edgeprune.budget.parse_term``), refused as bad input.

    Raises:
        BadInputError: unknown metric, a value that does not parse, or one out of range.
    """
    try:
        return parse_term(text)
    except BudgetSyntaxError as exc:
        raise BadInputError(str(exc)) from None
