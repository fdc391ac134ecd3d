"""Save and load pruned models: the original architecture + its plans + weights. No pickle.

A save is a directory::

    model.edgeprune/
      edgeprune.json       format/version, model spec (if any), plans in the order applied,
                           the weights file's name, size and sha256, tied-tensor aliases
      model.safetensors    the state dict (tensors that share memory stored once)

Loading rebuilds the architecture (from the recorded spec, or from the unpruned model the caller
passes), replays the plans on it (``edgeprune.surgery.apply_plan``: units, blocks and masks alike) and loads the weights with strict checks of names, shapes
and dtypes. It works on a copy and returns only on success: a corrupt, truncated or tampered save,
or a plan that does not fit, raises :class:`LoadError` and leaves the caller's model as it was.
A save is written to a temporary directory and renamed into place, so an interrupted save never
leaves a half-written one.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgeprune.plan import Plan, PlanError, plans_of
from edgeprune.result import PruneResult
from edgeprune.specs import SpecError, load_model, spec_of
from edgeprune._fs import replace_dir
from edgeprune.errors import EdgepruneError

SAVE_FORMAT = "edgeprune.saved"
SAVE_VERSION = 1
META_FILE = "edgeprune.json"
WEIGHTS_FILE = "model.safetensors"
ZOO_PREFIXES = ("torchvision", "timm")  # specs that name a model, not code: rebuilt from a save without model=


class LoadError(EdgepruneError, ValueError):
    """A saved model cannot be loaded: missing, corrupt, tampered, or it does not fit the model given."""


def save(obj: PruneResult | nn.Module, path: str | os.PathLike) -> Path:
    """Save a pruned model (or a ``PruneResult``) as a directory of JSON + safetensors.

    Args:
        obj: a ``PruneResult`` (its ``.model`` is saved, with ``skipped`` and ``stats`` as notes)
            or a model; the plans come from ``edgeprune.plan.plans_of(model)``.
        path: the directory to write. An existing edgeprune save there is replaced; any other
            existing file or non-empty directory is refused.

    Returns:
        The directory written.

    Raises:
        FileExistsError: ``path`` holds something that is not an edgeprune save.
        ValueError: the state dict holds something other than tensors.

    Example:
        >>> m = nn.Linear(4, 2)
        >>> save(m, "/tmp/edgeprune-doc.edgeprune").name
        'edgeprune-doc.edgeprune'
    """
    model = obj.model if isinstance(obj, PruneResult) else obj
    if not isinstance(model, nn.Module):
        raise TypeError(f"save takes a PruneResult or an nn.Module, not {type(obj).__name__}")
    path = Path(path)
    _check_target(path)
    tensors, aliases = _unique_tensors(model.state_dict())
    plans = plans_of(model)
    if isinstance(obj, PruneResult):  # a result whose model was not tagged still carries its plans
        plans.extend(p for p in obj.plans if p not in plans)

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        weights = tmp / WEIGHTS_FILE
        save_file(tensors, str(weights), metadata={"format": SAVE_FORMAT})
        meta: dict[str, Any] = {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "spec": spec_of(model),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "plans": [p.to_dict() for p in plans],
            "weights": {"file": WEIGHTS_FILE, "bytes": weights.stat().st_size, "sha256": _sha256(weights)},
            "aliases": aliases,
            "torch": torch.__version__,
        }
        if isinstance(obj, PruneResult):
            meta["result"] = {"skipped": obj.skipped, "stats": obj.stats}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        replace_dir(tmp, path)  # the old save or the new one, never half of each
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load a model saved with :func:`save`.

    Args:
        path: the save directory.
        model: a fresh, unpruned model of the saved architecture. Required when the save records
            no spec; when given it is used instead of the spec. It is not modified (a deep copy
            is pruned and loaded).

    Returns:
        The pruned model in eval mode, with its plans recorded (``plans_of(loaded)``) and, when
        built from a spec, its spec (``spec_of(loaded)``).

    Raises:
        LoadError: the save is missing, unreadable, of an unknown format or version; its spec names
            code (an import path or a .py file: pass ``model=`` to use it); the weights
            file's checksum does not match (truncated or tampered); a plan does not fit the model;
            tensor names, shapes or dtypes differ from the pruned model's.

    Example:
        >>> path = save(nn.Linear(4, 2), "/tmp/edgeprune-doc-load.edgeprune")
        >>> m = load(path, model=nn.Linear(4, 2))
        >>> m.weight.shape
        torch.Size([2, 4])
    """
    path = Path(path)
    meta = read_meta(path)
    weights = path / meta["weights"]["file"]
    if not weights.is_file():
        raise LoadError(f"{path}: weights file {weights.name} is missing")
    digest = _sha256(weights)
    if digest != meta["weights"].get("sha256"):
        raise LoadError(f"{path}: {weights.name} does not match its recorded sha256 "
                        f"({weights.stat().st_size} bytes, {meta['weights'].get('bytes')} recorded): "
                        "the file is truncated, corrupt or was changed after saving")
    state = _read_tensors(weights, meta.get("aliases", {}))
    plans = _read_plans(meta)
    target = _base_model(meta, model)
    for i, plan in enumerate(plans):
        try:
            _replay(target, plan)
        except PlanError as exc:
            raise LoadError(f"{path}: saved plan {i + 1} of {len(plans)} does not fit the model "
                            f"({meta.get('model_class')} expected): {exc}") from exc
    if not any(".parametrizations." in k for k in state):
        # Saved after finalize(): the zeros are baked into plain weights, so the loaded model is plain too.
        from edgeprune.surgery.masks import finalize

        finalize(target)
    _load_state_strict(target, state, path)
    target.eval()
    return target


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a save's ``edgeprune.json``.

    Args:
        path: the save directory.

    Returns:
        The description as a dict.

    Raises:
        LoadError: missing, not JSON, or not an edgeprune save of a supported version.
    """
    path = Path(path)
    if not path.is_dir():
        raise LoadError(f"{path} is not an edgeprune save (expected a directory with {META_FILE})")
    meta_file = path / META_FILE
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError as exc:
        raise LoadError(f"{path}: {META_FILE} is missing") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits, deep nesting
        raise LoadError(f"{path}: {META_FILE} is not valid JSON (truncated or corrupt): {str(exc)[:200]}") from exc
    if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
        raise LoadError(f"{path}: {META_FILE} does not describe an edgeprune save")
    if meta.get("version") != SAVE_VERSION:
        raise LoadError(f"{path}: save version {meta.get('version')!r} is not supported (expected {SAVE_VERSION})")
    weights = meta.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("file"), str) \
            or Path(weights["file"]).name != weights["file"]:
        raise LoadError(f"{path}: {META_FILE} has no valid 'weights' entry")
    aliases = meta.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise LoadError(f"{path}: {META_FILE} has a malformed 'aliases' entry (expected names to names)")
    if not isinstance(meta.get("plans", []), list):
        raise LoadError(f"{path}: {META_FILE} has a malformed 'plans' entry (expected a list of plans)")
    return meta


def _check_target(path: Path) -> None:
    if not path.exists():
        return
    if path.is_dir() and (not any(path.iterdir()) or (path / META_FILE).is_file()):
        return
    raise FileExistsError(f"{path} exists and is not an edgeprune save; refusing to overwrite it")


def _unique_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors to store (shared ones once) and ``alias -> stored name`` for the rest."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                             "edgeprune saves tensors only")
        t = value.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.cpu().contiguous().clone()
    return tensors, aliases


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_tensors(weights: Path, aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise LoadError(f"{weights}: cannot read the safetensors file: {exc}") from exc
    for alias, name in aliases.items():
        if name not in state:
            raise LoadError(f"{weights}: alias {alias!r} points to missing tensor {name!r}")
        state[alias] = state[name]
    return state


def _read_plans(meta: dict[str, Any]) -> list[Plan]:
    plans = []
    for i, data in enumerate(meta.get("plans", [])):
        try:
            plans.append(Plan.from_dict(data))
        except PlanError as exc:
            raise LoadError(f"saved plan {i + 1} is malformed: {exc}") from exc
    return plans


def _base_model(meta: dict[str, Any], model: nn.Module | None) -> nn.Module:
    if model is not None:
        if plans_of(model):
            raise LoadError("load(model=...) needs the unpruned original; this model has already been pruned "
                            f"by {len(plans_of(model))} plan(s)")
        return copy.deepcopy(model)
    spec = meta.get("spec")
    if not spec:
        raise LoadError(f"this save records no model spec ({meta.get('model_class')}); "
                        "pass the unpruned model: load(path, model=...)")
    if not isinstance(spec, str) or (":" in spec and spec.split(":", 1)[0] not in ZOO_PREFIXES):
        # An import path or a .py file names code to run; a file must never make edgeprune run code.
        raise LoadError(f"this save's model spec {str(spec)[:120]!r} names code to run; edgeprune rebuilds only "
                        f"zoo ({', '.join(ZOO_PREFIXES)}) and built-in models from a file: if you trust it, "
                        "pass the unpruned model yourself: load(path, model=load_model(spec))")
    try:
        return load_model(spec, trained=False)  # the architecture: the saved weights replace its own
    except SpecError as exc:
        raise LoadError(f"cannot rebuild the saved model from its spec {spec!r}: {exc}") from exc


def _replay(model: nn.Module, plan: Plan) -> None:
    from edgeprune.surgery import apply_plan

    apply_plan(model, plan, inplace=True)  # the loaded model remembers every plan, as the saved one did


def _load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise LoadError(f"{path}: saved tensors do not match the pruned model: missing {missing[:5]}"
                        f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                        f"{'...' if len(unexpected) > 5 else ''}")
    for name, tensor in expected.items():
        saved = state[name]
        if tuple(saved.shape) != tuple(tensor.shape) or saved.dtype != tensor.dtype:
            raise LoadError(f"{path}: tensor {name!r} is saved as {list(saved.shape)} {saved.dtype}, "
                            f"the pruned model has {list(tensor.shape)} {tensor.dtype}")
    model.load_state_dict(state, strict=True)
