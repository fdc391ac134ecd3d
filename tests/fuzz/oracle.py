"""The oracle every generated model goes through; anything it cannot classify is a silent corruption.

Two checks per model:

* **dead units**: about half the units of every group that can be killed exactly are made
  provably dead (every weight that reads them is zeroed), a plan removing them is applied, and
  the pruned model must give the same outputs (1e-5 relative to the largest output), be smaller,
  give the same outputs when each group's dead units are removed alone (uneven removals), and
  again with every attention block switched to its other path (SDPA <-> eager);
* **live units**: ``edgeprune.prune(model, x, ratio=0.3)``; the pruned model runs, keeps its output
  shapes, has fewer MACs when a unit was removed, agrees with its ONNX export on ONNX Runtime, is
  rebuilt exactly from its plan's JSON, and runs under the other attention path.

A prune refused with an ``EdgepruneError`` counts as *refused by name* (the reason is kept); any
other exception or failed check is a *corruption*, reported with the seed and what broke.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

import edgeprune as ep
from edgeprune.graph.trace import call_model
from edgeprune.strategies import lowest, make_plan, removable
from edgeprune.surgery import named_tensors

from tests.test_equivalence import _reads_statistics, make_dead  # the engine tests' dead-unit oracle

RTOL = 1e-5


@dataclass
class Outcome:
    """What the oracle found for one model."""

    seed: int
    status: str  # "correct", "refused" or "corrupt"
    detail: str = ""
    groups: int = 0
    dead_removed: int = 0
    live_removed: int = 0
    mac_ratio: float | None = None
    onnx_checked: bool = False
    skipped: dict[str, str] = field(default_factory=dict)


def _leaves(output: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def _max_error(reference: Any, result: Any) -> float:
    """The largest element difference of each output leaf relative to that leaf's largest value."""
    ref, got = _leaves(reference), _leaves(result)
    if [t.shape for t in ref] != [t.shape for t in got]:
        return float("inf")
    return max(float((g - r).abs().max() / r.abs().max().clamp_min(1e-6)) for r, g in zip(ref, got))


def switch_attention(model: nn.Module) -> int:
    """Flip every generated attention block between SDPA and eager; return how many were flipped."""
    n = 0
    for m in model.modules():
        if getattr(m, "impl", None) in ("sdpa", "eager"):
            m.impl = "eager" if m.impl == "sdpa" else "sdpa"
            n += 1
    return n


def dead_check(model: nn.Module, inputs: Any, seed: int = 0) -> tuple[int, int, dict[str, str]]:
    """Kill units, prune them, compare. Returns (groups, units removed, skipped); raises on a problem."""
    model = copy.deepcopy(model)
    analysis = ep.analyze(model, inputs)
    gen = torch.Generator().manual_seed(seed)
    removals = {}
    for g in analysis.groups:
        if _reads_statistics(model, g):
            continue
        units = lowest(torch.rand(g.size, generator=gen), removable(g, g.size // 2), g.partitions)
        if units:
            make_dead(model, g, units)
            removals[g.name] = units
    plan = make_plan(analysis.groups, removals, named_tensors(model))
    with torch.no_grad():
        reference = call_model(model, inputs)
        pruned = ep.apply_plan(model, plan)
        result = call_model(pruned, inputs)
        error = _max_error(reference, result)
        if not error < RTOL:
            raise Corruption(f"dead units: outputs changed by {error:.3g} (relative) after removing {removals}")
        if removals and _params(pruned) >= _params(model):
            raise Corruption("dead units: the plan removed units but the model did not shrink")
        # One group at a time: strategies remove different numbers from different groups, which a
        # size computed from several groups' widths (a chunk, a split by x.shape) does not survive.
        if len(removals) > 1:
            for name, units in removals.items():
                alone = ep.apply_plan(model, make_plan(analysis.groups, {name: units}, named_tensors(model)))
                error = _max_error(reference, call_model(alone, inputs))
                if not error < RTOL:
                    raise Corruption(f"dead units: removing {units} from group {name!r} alone changed the "
                                     f"outputs by {error:.3g}")
        if switch_attention(pruned):
            switch_attention(model)
            error = _max_error(call_model(model, inputs), call_model(pruned, inputs))
            if not error < RTOL:
                raise Corruption(f"dead units: the other attention path differs by {error:.3g} after pruning")
    return len(analysis.groups), plan.removed_units, dict(analysis.skipped)


def live_check(model: nn.Module, inputs: Any, ratio: float = 0.3, onnx: bool = True,
               exporter: str = "torchscript") -> tuple[int, float, bool]:
    """Prune live units at ``ratio`` and check the result.

    Returns:
        (units removed, MAC ratio, whether ONNX parity was checked: not when the unpruned model
        does not export either, an exporter limit rather than the prune's doing).
    """
    from edgeprune.verify import verify_pruned

    result = ep.prune(model, inputs, ratio=ratio)
    removed = sum(p.removed_units for p in result.plans)
    report = verify_pruned(model, result.model, inputs, onnx=onnx, rtol=1e-4, exporter=exporter)
    if onnx and report.onnx_ok is False and not verify_pruned(model, model, inputs, onnx=True, rtol=1e-4,
                                                              exporter=exporter).onnx_ok:
        report.problems = [p for p in report.problems if not p.startswith("ONNX")]
        onnx = False
    if report.problems:
        raise Corruption(f"live prune at {ratio}: {'; '.join(report.problems)}")
    if removed and not report.mac_ratio < 1:
        raise Corruption(f"live prune at {ratio}: {removed} units removed but MACs x{report.mac_ratio:.3f}")
    with torch.no_grad():
        got = call_model(result.model, inputs)
        replayed = ep.apply_plan(model, [ep.Plan.from_json(p.to_json()) for p in result.plans])
        replayed.load_state_dict(result.model.state_dict())
        if _max_error(got, call_model(replayed, inputs)) != 0:
            raise Corruption("live prune: the plan replayed from JSON gives another model")
        if switch_attention(result.model):
            error = _max_error(got, call_model(result.model, inputs))
            if not error < 1e-4:
                raise Corruption(f"live prune: the other attention path differs by {error:.3g}")
    return removed, report.mac_ratio, onnx


class Corruption(AssertionError):
    """A check of the oracle failed: the prune neither worked nor was refused by name."""


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reason_key(message: str) -> str:
    """A refusal or skip reason with names and numbers taken out, so that like reasons count together."""
    text = re.sub(r"'[^']*'", "'*'", message.split(":")[0])
    text = re.sub(r"\(.*?\)", "", text)
    return re.sub(r"\d+", "N", text).strip()[:110]


def check(model: nn.Module, inputs: Any, seed: int = 0, onnx: bool = True, exporter: str = "torchscript") -> Outcome:
    """Run both checks on one model and classify it.

    Args:
        model: the model (not changed).
        inputs: its example inputs.
        seed: the seed (reported, and used to choose the dead units).
        onnx: include the ONNX parity of the live prune.
        exporter: the ONNX exporter (``"torchscript"``: ~0.1 s a model; ``"auto"``: dynamo first, ~3 s).

    Returns:
        An ``Outcome``: ``correct``, ``refused`` (an ``EdgepruneError``; ``detail`` is its message)
        or ``corrupt`` (``detail`` says what broke).
    """
    out = Outcome(seed, "correct")
    stage = "dead-unit prune"
    try:
        out.groups, out.dead_removed, out.skipped = dead_check(model, inputs, seed)
        stage = "live prune"
        out.live_removed, out.mac_ratio, out.onnx_checked = live_check(model, inputs, onnx=onnx, exporter=exporter)
    except ep.EdgepruneError as exc:
        out.status, out.detail = "refused", f"{type(exc).__name__}: {exc}"
    except Corruption as exc:
        out.status, out.detail = "corrupt", str(exc)
    except Exception as exc:  # anything else out of prune is the corruption the fuzzer looks for
        out.status, out.detail = "corrupt", f"{stage} raised {type(exc).__name__}: {exc}"
    return out
