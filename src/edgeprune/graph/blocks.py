"""Finding residual blocks: modules whose output is their input plus what their branches add.

A module ``M`` is a residual block when one call maps ``x`` to ``y`` of the same shape and ``y``
comes out of an ``add`` whose operands lead back to ``x`` through adds only (``y = x + f(x)``, or
a pre-norm transformer block's ``x1 = x + attn(x); y = x1 + mlp(x1)``). Replacing such a module
by the identity keeps every shape and removes exactly what its branches add.

A ReLU after the add (ResNet's ``relu(x + f(x))``) is allowed only where ``x`` cannot be negative:
``x`` itself came out of a ReLU, or out of a pooling of such a tensor (ResNet's max-pooled stem).
Then ``relu(x + 0) = x`` and the identity is still exact. Any other op after the add (a norm, a
GELU, a ReLU over an input that may be negative) disqualifies the block: dropping it would change
more than what its branches add.

Only the innermost candidates are kept: a stack of residual blocks is itself "x plus what it adds",
but the unit is each block. Each one is proved droppable by running a meta-device copy of the
model without it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from edgeprune.graph.probe import meta_copy
from edgeprune.graph.trace import call_model, op_name, tensors_in
from edgeprune.specs import eval_mode

_ADDS = {"add"}
_RELUS = {"relu"}  # relu_ and F.relu(inplace=True) normalise to it
_KEEPS_SIGN = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
               "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool2d_with_indices", "adaptive_max_pool1d",
               "_max_pool1d", "_max_pool2d", "_max_pool3d", "_adaptive_max_pool2d"}


class _AddRecorder(TorchFunctionMode):
    """Remembers, for each tensor an ``add`` produced, the ids of its tensor operands; which of them
    then went through a ReLU; and which tensors cannot be negative (ReLU outputs and their poolings)."""

    def __init__(self) -> None:
        super().__init__()
        self.operands: dict[int, tuple[int, ...]] = {}
        self.relued: set[int] = set()  # add outputs seen through a ReLU (their ids now name its output)
        self.nonnegative: set[int] = set()
        self.alive: list[torch.Tensor] = []  # keeps ids unique during the run

    def __torch_function__(self, func, types, args=(), kwargs=None):
        ins = tensors_in((args, kwargs))
        before = [id(t) for t in ins]
        out = func(*args, **(kwargs or {}))
        outs = [out] if isinstance(out, torch.Tensor) else [t for t in out if isinstance(t, torch.Tensor)] \
            if isinstance(out, tuple) else []
        if not outs:
            return out
        name = op_name(func)
        self.alive.extend([*outs, *ins])
        first = id(outs[0])
        if name in _ADDS:
            self.operands[first] = tuple(before)
            self.relued.discard(first)
            self.nonnegative.discard(first)
        elif name in _RELUS and before:
            source = before[0]
            if source in self.operands:  # relu(x + f(x)): the add stays visible through the ReLU
                self.operands[first] = self.operands[source]
                self.relued.add(first)
            self.nonnegative.add(first)
        elif name in _KEEPS_SIGN and before and before[0] in self.nonnegative:
            self.operands.pop(first, None)
            self.nonnegative.add(first)
        else:  # any other op (in place or not) makes the tensor something else
            self.operands.pop(first, None)
            self.relued.discard(first)
            self.nonnegative.discard(first)
        return out


def _leads_back(y: int, x: int, rec: _AddRecorder, depth: int = 0) -> tuple[bool, bool]:
    """(whether ``y`` is ``x`` plus branches through adds and ReLUs, whether a ReLU was passed)."""
    if depth > 8 or y not in rec.operands:
        return False, False
    relu = y in rec.relued
    for t in rec.operands[y]:
        if t == x:
            return True, relu
        found, inner = _leads_back(t, x, rec, depth + 1)
        if found:
            return True, relu or inner
    return False, False


def _is_residual(y: int, x: int, rec: _AddRecorder) -> bool:
    found, through_relu = _leads_back(y, x, rec)
    return found and (not through_relu or x in rec.nonnegative)


def residual_blocks(model: nn.Module, example_inputs: Any) -> list[str]:
    """Names of the model's (innermost) residual blocks, in execution order.

    Args:
        model: the model (run once in eval mode without gradients; unchanged).
        example_inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.

    Example:
        >>> from edgeprune.tasks import get_task
        >>> task = get_task("mnist-vit")
        >>> residual_blocks(task.build(seed=0), task.example_input())
        ['blocks.0', 'blocks.1', 'blocks.2', 'blocks.3']
    """
    calls: dict[str, list[tuple[int, int, bool]]] = {}
    order: list[str] = []
    hooks = []
    recorder = _AddRecorder()
    for name, module in model.named_modules():
        if not name or not any(True for _ in module.parameters()):
            continue

        def hook(m, args, out, name=name):
            if len(args) == 1 and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                x = args[0]
                recorder.alive.extend([x, out])
                same = out.shape == x.shape and out is not x
                calls.setdefault(name, []).append((id(x), id(out), same))
                if name not in order:
                    order.append(name)
            else:
                calls.setdefault(name, []).append((0, 0, False))
        hooks.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad(), recorder:
            call_model(model, example_inputs)
    finally:
        for h in hooks:
            h.remove()
    found = [name for name in order if len(calls[name]) == 1 and calls[name][0][2]
             and _is_residual(calls[name][0][1], calls[name][0][0], recorder)]
    innermost = [n for n in found if not any(other.startswith(n + ".") for other in found)]
    return [n for n in innermost if _runs_without(model, example_inputs, n)]


def _runs_without(model: nn.Module, example_inputs: Any, name: str) -> bool:
    """Whether a meta-device copy of the model runs, with its output shapes, when ``name`` is the identity."""
    try:
        copy_, inputs = meta_copy(model, example_inputs)
        reference = [t.shape for t in tensors_in(call_model(copy_.eval(), inputs))]
        parent_name, _, child = name.rpartition(".")
        setattr(copy_.get_submodule(parent_name), child, nn.Identity())
        with torch.no_grad():
            return [t.shape for t in tensors_in(call_model(copy_, inputs))] == reference
    except Exception:  # the forward reads something of the block (an attribute, a submodule)
        return False
