"""From a model and an example input to its prunable groups: trace, group, probe."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable

import torch.nn as nn

from edgeprune.graph.groups import Group, build_groups
from edgeprune.errors import ProbeError
from edgeprune.graph.headdims import settle
from edgeprune.graph.probe import (check_head_dims, freeze_at, freeze_heads_at, meta_agrees, run_probe,
                                   uneven_subsets)
from edgeprune.graph.rules import RuleRegistry, default_rules
from edgeprune.graph.trace import TraceResult, trace, warm_copy
from edgeprune.surgery.structured import named_tensors

Ignore = Iterable["str | nn.Module | type"]


@dataclass
class Analysis:
    """The prunable groups of a model, what was left alone and why, and the trace behind them."""

    groups: list[Group]
    skipped: dict[str, str]
    trace: TraceResult
    probe_rounds: int = 0


def analyze(model: nn.Module, example_inputs: Any, *, ignore: Ignore = (), rules: RuleRegistry | None = None,
            probe: bool = True, max_probe_rounds: int | None = None, head_dims: bool = False) -> Analysis:
    """Trace ``model`` once and return the groups that can be pruned without changing its outputs' shapes.

    Args:
        model: the model (left unchanged: a copy of it runs the example input once in eval mode
            without gradients, so that first-call state such as anchors is in place, and that warmed
            copy is traced and probed; see ``edgeprune.graph.trace.warm_copy``).
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        ignore: modules whose output units must be kept: names (glob patterns allowed),
            module objects or module types.
        rules: op rules; ``default_rules()`` unless a copy extended with custom ops is given.
        probe: verify on a copy that every group can shrink (see ``edgeprune.graph.probe``).
        max_probe_rounds: give up (``ProbeError``) after this many probe rounds. A round freezes
            what the first disagreeing op touches, so the default allows one round per group first
            found (at least 24): a model with many attention blocks whose code fixes the head count
            needs a round per block.
        head_dims: cut attention heads within (each head keeps fewer dims, the head count stays)
            instead of removing whole heads; see ``edgeprune.graph.headdims``. An attention that
            cannot be cut so (rotary position code, a q/k norm, a scale computed from the head dim
            that cannot be kept) has its heads cut whole, and ``skipped`` says why under
            ``"<module> (head dims)"``.

    Returns:
        An ``Analysis`` whose ``skipped`` maps each group left alone to the reason.

    Example:
        >>> import torch, torchvision
        >>> a = analyze(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))
        >>> len(a.groups) > 0
        True
    """
    caller = model
    model = warm_copy(caller, example_inputs)  # traced and probed from here on; names are the caller's
    rules = rules or default_rules()
    whole: dict[str, str] = {}  # modules whose heads are cut whole after all (head_dims=True), and why
    notes: dict[str, str] = {}
    while True:
        tr, _ = trace(model, example_inputs, rules, head_dims=head_dims, whole_heads=frozenset(whole))
        notes.update(tr.head_dim_refusals)  # cut whole while tracing (rotary code, nn.MultiheadAttention)
        refused = settle(tr) if head_dims else {}
        if not refused:
            groups, skipped, rounds = _probe_groups(model, example_inputs, tr, caller, ignore, probe, max_probe_rounds)
            refused = check_head_dims(model, example_inputs, tr, groups) if head_dims and probe else {}
            if not refused:
                break
        if set(refused) <= set(whole):  # cannot happen: a module cut whole has no cut within heads to refuse
            raise ProbeError(f"head dims of {sorted(refused)} refused again after being cut whole")
        whole.update(refused)  # trace again, with those heads cut whole
    skipped.update({f"{m or 'top level'} (head dims)": f"heads cut whole, not within: {r}"
                    for m, r in {**notes, **whole}.items()})
    return Analysis(groups, skipped, tr, rounds)


def _probe_groups(model: nn.Module, example_inputs: Any, tr: TraceResult, caller: nn.Module, ignore: Ignore,
                  probe: bool, max_probe_rounds: int | None) -> tuple[list[Group], dict[str, str], int]:
    """Groups of a trace, probed until the pruned copy agrees on every shape."""
    _block_built_on_first_call(tr, caller, model)
    _block_ignored(tr, caller, ignore)
    rounds = 0
    meta = True  # cheap probes on the meta device; a disagreement there is confirmed on real tensors
    while True:
        groups, skipped = build_groups(tr)
        if not probe or not groups:
            break
        if max_probe_rounds is None:
            max_probe_rounds = max(24, len(groups) + 1)
        for only in [None, *uneven_subsets(groups)]:  # every group cut alike, then unevenly
            outcome = run_probe(model, example_inputs, tr, groups, meta=meta, only=only)
            if outcome.mismatch is not None and meta:
                outcome = run_probe(model, example_inputs, tr, groups, meta=False, only=only)
                meta = outcome.mismatch is not None and meta_agrees(model, example_inputs, tr)
            if outcome.mismatch is not None:
                break
        rounds += 1
        if outcome.mismatch is None:
            break
        if rounds >= max_probe_rounds:
            raise ProbeError(f"after {rounds} probe rounds the pruned copy still disagrees at op "
                             f"'{tr.records[outcome.mismatch].name}': {outcome.detail}")
        if not outcome.outside_op and freeze_heads_at(tr, outcome.mismatch, outcome.detail, groups):
            continue  # heads first: the other groups at this op get frozen only if it still disagrees
        if not outcome.outside_op and freeze_at(tr, outcome.mismatch, outcome.detail, include_previous=False):
            continue
        # The failure touches no prunable group (a size reached it through Python: ``x.shape`` read
        # elsewhere, an assert, TorchScript). Find the group responsible by bisection, and freeze it.
        culprit = _bisect_culprit(model, example_inputs, tr, groups, meta)
        record = tr.records[outcome.mismatch]
        if culprit is None:
            raise ProbeError(f"the pruned copy fails at op '{record.name}' in {record.module or 'the top-level forward'}"
                             f" and no single group explains it: {outcome.detail}")
        where = (f"the forward outside any traced op (Python or TorchScript code before op '{record.name}' in "
                 f"{record.module or 'the top level'})" if outcome.outside_op else
                 f"op '{record.name}' in {record.module or 'the forward'} (a size read from a tensor and used elsewhere)")
        tr.spaces.block_space(culprit.root, f"pruning it breaks {where}: {outcome.detail}")
    return groups, skipped, rounds


def _bisect_culprit(model: nn.Module, example_inputs: Any, tr: TraceResult, groups: list[Group],
                    meta: bool) -> Group | None:
    """The first group whose pruning (together with the groups before it) breaks the probe."""
    def fails(subset: list[Group]) -> bool:
        return bool(subset) and run_probe(model, example_inputs, tr, subset, meta=meta).mismatch is not None

    lo, hi = 0, len(groups)  # invariant: groups[:lo] passes, groups[:hi] fails
    if not fails(groups):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(groups[:mid]):
            hi = mid
        else:
            lo = mid
    return groups[hi - 1]


def _block_built_on_first_call(tr: TraceResult, caller: nn.Module, warm: nn.Module) -> None:
    """Keep whole every space a tensor touches that the caller's model lacks, or has in another shape.

    Such a tensor was built by the warm-up forward (a lazily registered buffer): a plan naming it
    would not apply to the caller's model, whose own first call builds it afresh.
    """
    before = {name: tuple(t.shape) for name, t in named_tensors(caller).items()}
    for name, t in named_tensors(warm).items():
        if before.get(name) == tuple(t.shape) or name not in tr.param_dims:
            continue
        for dm in tr.param_dims[name]:
            tr.spaces.block(dm, f"'{name}' is built by the model's first forward (not in the model before it ran)")


def _block_ignored(tr: TraceResult, model: nn.Module, ignore: Ignore) -> None:
    patterns = list(ignore)
    if not patterns:
        return
    for name, module in model.named_modules():
        if not any(_matches(p, name, module) for p in patterns):
            continue
        for pname, dims in tr.param_dims.items():
            if pname.rpartition(".")[0] != name:
                continue
            for d, dm in enumerate(dims):
                if tr.roles.get((pname, d)) == "out":
                    tr.spaces.block(dm, f"protected by ignore= ({name})")


def _matches(pattern: Any, name: str, module: nn.Module) -> bool:
    if isinstance(pattern, str):
        return fnmatch.fnmatchcase(name, pattern)
    if isinstance(pattern, type):
        return isinstance(module, pattern)
    return pattern is module
