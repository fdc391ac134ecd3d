"""Run a model on data to fill what data-driven criteria read: gradients and activation statistics.

Criteria stay pure functions of ``(group, ctx)``; these functions run the batches and return a
:class:`Collected` whose :meth:`Collected.context` is the ``ScoreContext`` to score with.
The model is run in eval mode (BatchNorm statistics and dropout as at inference), its mode is
restored, and its ``.grad`` fields are left untouched (gradients come from ``torch.autograd.grad``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.criteria.base import ScoreContext

LossFn = Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]
"""``loss_fn(model, inputs, targets) -> scalar loss``; cross-entropy of ``model(inputs)`` by default."""

_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                  nn.modules.instancenorm._InstanceNorm)


@dataclass
class Collected:
    """What a pass over data collected, and what it cost.

    Attributes:
        grads: mean over batches of the gradient of the batch loss, per parameter name.
        grad_sq: mean over batches of the squared batch gradient (empirical Fisher diagonal).
        batch_grads: every batch's gradients, when asked for (``keep_batches=True``).
        activations: per module, ``{"mean": [C], "apoz": [C], "order": k}``.
        batches: batches run.
        samples: samples run.
        forward: forward passes (batches).
        backward: backward passes (batches).
        seconds: wall time.
    """

    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    grad_sq: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    batch_grads: list[dict[str, torch.Tensor]] = field(default_factory=list)
    batches: int = 0
    samples: int = 0
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0

    def context(self, model: nn.Module, seed: int = 0) -> ScoreContext:
        """A ``ScoreContext`` over ``model``'s tensors with the collected data."""
        from edgeprune.surgery import named_tensors

        return ScoreContext(named_tensors(model), dict(self.grads), seed, dict(self.grad_sq), dict(self.activations),
                            list(self.batch_grads))


def cross_entropy(model: nn.Module, inputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """The default loss: cross-entropy of the model's logits."""
    return F.cross_entropy(_call(model, inputs), targets)


def mean_loss(model: nn.Module, data: Iterable, loss_fn: LossFn | None = None,
              batches: int | None = None) -> tuple[float, int]:
    """Sample-weighted mean of the loss over ``batches`` batches of ``data``, in eval mode, without gradients.

    Returns:
        ``(mean loss, batches run)``.

    Example:
        >>> m = nn.Linear(4, 3)
        >>> loss, n = mean_loss(m, [(torch.randn(8, 4), torch.randint(0, 3, (8,)))])
        >>> loss > 0, n
        (True, 1)
    """
    loss_fn = loss_fn or cross_entropy
    total, samples, run = 0.0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, (inputs, targets) in enumerate(data):
                if batches is not None and i >= batches:
                    break
                n = _batch_size(inputs)
                total += float(loss_fn(model, inputs, targets)) * n
                samples, run = samples + n, run + 1
    finally:
        model.train(was_training)
    if run == 0:
        raise ValueError("mean_loss got no batches: data is empty")
    return total / samples, run


def collect_gradients(model: nn.Module, data: Iterable, loss_fn: LossFn | None = None,
                      batches: int | None = None, keep_batches: bool = False) -> Collected:
    """Gradients of the loss over ``batches`` batches of ``data``: their mean and mean square.

    Args:
        model: the model (eval mode during the pass; its ``.grad`` fields are not touched).
        data: yields ``(inputs, targets)``.
        loss_fn: ``loss_fn(model, inputs, targets) -> loss``; cross-entropy by default.
        batches: stop after this many batches (all of ``data`` when ``None``).
        keep_batches: also keep each batch's gradients (``batch_grads``; batches x parameters of memory).

    Returns:
        A :class:`Collected` with ``grads`` and ``grad_sq`` for every parameter that needs a gradient.

    Example:
        >>> m = nn.Linear(4, 3)
        >>> c = collect_gradients(m, [(torch.randn(8, 4), torch.randint(0, 3, (8,)))])
        >>> c.grads["weight"].shape, c.backward
        (torch.Size([3, 4]), 1)
    """
    loss_fn = loss_fn or cross_entropy
    named = [(n, p) for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad]
    unique = list({id(p): p for _, p in named}.values())
    total = [torch.zeros_like(p, dtype=torch.float32) for p in unique]
    total_sq = [torch.zeros_like(p, dtype=torch.float32) for p in unique]
    index = {id(p): k for k, p in enumerate(unique)}
    out = Collected()
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        for i, (inputs, targets) in enumerate(data):
            if batches is not None and i >= batches:
                break
            loss = loss_fn(model, inputs, targets)
            grads = torch.autograd.grad(loss, unique, allow_unused=True)
            for k, g in enumerate(grads):
                if g is not None:
                    total[k] += g.float()
                    total_sq[k] += g.float().pow(2)
            if keep_batches:
                out.batch_grads.append({n: grads[index[id(p)]].float() for n, p in named
                                        if grads[index[id(p)]] is not None})
            out.batches += 1
            out.samples += _batch_size(inputs)
    finally:
        model.train(was_training)
    if out.batches == 0:
        raise ValueError("collect_gradients got no batches: data is empty")
    for name, p in named:
        out.grads[name] = total[index[id(p)]] / out.batches
        out.grad_sq[name] = total_sq[index[id(p)]] / out.batches
    out.forward = out.backward = out.batches
    out.seconds = time.perf_counter() - start
    return out


@torch.no_grad()
def collect_activations(model: nn.Module, data: Iterable, batches: int | None = None) -> Collected:
    """Per-channel output statistics of every layer that owns parameters, over ``batches`` batches.

    The channel dimension is 1 for convolutions and channel norms, the last one otherwise
    (``nn.Linear``, ``nn.LayerNorm``). ``mean`` is the mean of ``max(y, 0)`` and ``apoz`` the fraction of
    ``y <= 0`` (what a following ReLU zeroes), over every other dimension and every sample.

    Args:
        model: the model (eval mode during the pass).
        data: yields ``(inputs, targets)`` (targets are ignored) or bare inputs.
        batches: stop after this many batches (all of ``data`` when ``None``).

    Returns:
        A :class:`Collected` with ``activations``.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> c = collect_activations(m, [(torch.randn(8, 4), None)])
        >>> sorted(c.activations), c.activations["0"]["apoz"].shape
        (['0', '2'], torch.Size([6]))
    """
    sums: dict[str, list] = {}
    order: dict[str, int] = {}

    def hook(name: str, channel_first: bool):
        def record(module, args, output):
            if not isinstance(output, torch.Tensor) or output.dim() == 0:
                return
            y = output.detach().float()
            y = y.movedim(1, -1) if channel_first and y.dim() > 1 else y
            y = y.reshape(-1, y.shape[-1])  # (positions, C)
            entry = sums.setdefault(name, [torch.zeros(y.shape[1]), torch.zeros(y.shape[1]), 0])
            if entry[0].numel() != y.shape[1]:
                return  # a module called twice with different widths: no per-channel statistic
            entry[0] += y.clamp_min(0).sum(0)
            entry[1] += (y <= 0).float().sum(0)
            entry[2] += y.shape[0]
            order.setdefault(name, len(order))
        return record

    handles = [m.register_forward_hook(hook(n, isinstance(m, _CHANNEL_FIRST)))
               for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    out = Collected()
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(data):
            if batches is not None and i >= batches:
                break
            inputs = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
            _call(model, inputs)
            out.batches += 1
            out.samples += _batch_size(inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if out.batches == 0:
        raise ValueError("collect_activations got no batches: data is empty")
    out.activations = {n: {"mean": s / max(c, 1), "apoz": z / max(c, 1), "order": torch.tensor(order[n])}
                       for n, (s, z, c) in sums.items()}
    out.forward = out.batches
    out.seconds = time.perf_counter() - start
    return out


def collect(model: nn.Module, data: Iterable, needs: frozenset[str], loss_fn: LossFn | None = None,
            batches: int | None = None) -> Collected:
    """Collect what ``needs`` names (``"grads"``, ``"grad_sq"``, ``"batch_grads"``, ``"activations"``), in as
    few passes as possible."""
    out = Collected()
    if needs & {"grads", "grad_sq", "batch_grads"}:
        out = collect_gradients(model, data, loss_fn, batches, keep_batches="batch_grads" in needs)
    if "activations" in needs:
        acts = collect_activations(model, data, batches)
        out.activations = acts.activations
        out.forward += acts.forward
        out.batches += acts.batches
        out.samples += acts.samples
        out.seconds += acts.seconds
    return out


def _call(model: nn.Module, inputs: Any) -> torch.Tensor:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _batch_size(inputs: Any) -> int:
    first = inputs if isinstance(inputs, torch.Tensor) else next(iter(inputs.values() if isinstance(inputs, dict) else inputs))
    return int(first.shape[0]) if first.dim() else 1
