"""Least-squares reconstruction: refit the layers that read a cut so they reproduce the dense outputs.

A Linear whose input features were pruned (a consumer of a pruned group) sees fewer inputs than it
was trained on; its output drifts from the dense model's. With no training, its weight and bias can
be refit so that, on a few calibration batches, ``y = x W^T + b`` from the pruned model's inputs
matches the dense model's output of the same layer as closely as least squares allows. This is the
layer-wise reconstruction of post-training pruning (Kwon et al., "A Fast Post-Training Pruning
Framework for Transformers", NeurIPS 2022, among others).

The fit accumulates ``A = X^T X`` and ``B = X^T Y`` over the calibration rows (``X``: the pruned
layer's inputs with a column of ones for the bias, ``Y``: the dense layer's outputs), in float64,
and solves the ridge problem ``min |X T - Y|^2 + lam |T - T0|^2`` (``T0``: the layer's weights as
the cut left them; ``lam = ridge * trace(A) / n``). Shrinking towards ``T0`` rather than towards
zero means the refit can never raise the layer's calibration error: ``T0`` is a candidate of the
same problem with no penalty.

``sequential=True`` (what the literature does) refits the layers in the order the forward pass
reaches them, each on inputs from the already refit model, so later layers also correct what the
earlier ones could not; ``False`` fits every layer at once on the inputs of the model as cut (one
pass over the data instead of one per layer). In the sequential passes both models stop at the
layer being refit (nothing after it is needed), so a pass costs on average about half a forward
of each; a layer called more than once per forward (shared weights) is run to the end instead.

Only Linear consumers are refit. A convolution whose input channels were cut is refused by name,
and a Linear whose output features were also cut (its dense target would need the plan's
indices) is left as it is and listed in the log's ``skipped``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from edgeprune.errors import UnsupportedModelError
from edgeprune.graph.trace import call_model

RowsFn = Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class Reconstruct:
    """How to refit the consumers of the cut (the ``reconstruct`` recovery step).

    Attributes:
        data: calibration batches: ``(inputs, targets)`` or bare inputs (tensor, tuple or dict).
        batches: how many batches of ``data`` to use (all when ``None``).
        ridge: the ridge, relative to the mean of ``diag(X^T X)``; it shrinks towards the cut weights.
        sequential: refit layer by layer in forward order, each on the already refit model's inputs.
        rows: ``rows(inputs) -> bool mask`` over the leading dims of every refit layer's input (for
            token inputs ``(B, L, F)``: a ``(B, L)`` mask of real tokens, so padding is not fitted);
            ``None``: every row counts.

    Example:
        >>> dense = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        >>> cut = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> log = reconstruct(cut, dense, Reconstruct(data=[torch.randn(64, 4)], batches=1))
        >>> list(log.layers)
        ['2']
    """

    data: Iterable
    batches: int | None = 8
    ridge: float = 1e-3
    sequential: bool = True
    rows: RowsFn | None = None

    def __post_init__(self) -> None:
        if not self.ridge > 0:
            raise ValueError(f"ridge must be positive, got {self.ridge}")
        if self.batches is not None and self.batches < 1:
            raise ValueError(f"batches must be >= 1 (or None for all), got {self.batches}")


@dataclass
class ReconstructLog:
    """What a reconstruction did: per layer, the relative calibration error ``|XW - Y|^2 / |Y|^2``
    before and after the refit, and the rows it was fitted on."""

    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    batches: int = 0
    forward: int = 0  # forward passes (batches) of either model started, stopped early or not
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"layers": self.layers, "skipped": self.skipped, "batches": self.batches, "forward": self.forward,
                "seconds": self.seconds}


def consumers(model: nn.Module, dense: nn.Module) -> tuple[list[str], dict[str, str]]:
    """The Linears of ``model`` whose input features differ from the same-named Linear of ``dense``
    (and whose outputs do not), in module order, and the skipped ones with why.

    Raises:
        UnsupportedModelError: a convolution had its input channels cut (only Linears are refit).
    """
    theirs = dict(dense.named_modules())
    names, skipped = [], {}
    for name, m in model.named_modules():
        d = theirs.get(name)
        if isinstance(m, _ConvNd) and isinstance(d, _ConvNd) and m.in_channels != d.in_channels:
            raise UnsupportedModelError(f"reconstruct refits Linear layers only; {name} ({type(m).__name__}) had its "
                                   f"input channels cut ({d.in_channels} -> {m.in_channels})")
        if not isinstance(m, nn.Linear) or not isinstance(d, nn.Linear) or m.in_features == d.in_features:
            continue
        if m.out_features != d.out_features:
            skipped[name] = f"its outputs were cut too ({d.out_features} -> {m.out_features})"
        else:
            names.append(name)
    return names, skipped


def reconstruct(model: nn.Module, dense: nn.Module, config: Reconstruct) -> ReconstructLog:
    """Refit, in place, every Linear of ``model`` whose inputs were cut, to match ``dense``'s outputs.

    Args:
        model: the pruned model (module names as in ``dense``; left in eval mode).
        dense: the model before the cut (not changed).
        config: the :class:`Reconstruct` settings.

    Returns:
        A :class:`ReconstructLog`.

    Raises:
        UnsupportedModelError: a convolution consumer, or a layer run a different number of times
            in the two models.
        ValueError: no calibration batch, or a ``rows`` mask whose shape does not fit a layer's input.
    """
    started = time.perf_counter()
    names, skipped = consumers(model, dense)
    log = ReconstructLog(skipped=skipped)
    batches = _take(config.data, config.batches)
    if not batches:
        raise ValueError("reconstruct needs calibration data: the data gave no batch")
    log.batches = len(batches)
    mine = dict(model.named_modules())
    modes = (model.training, dense.training)
    model.eval()
    dense.eval()
    try:
        if config.sequential:
            order, once = _forward_order(model, dense, names, batches[0], log)
            for name in order:
                stats = _accumulate(model, dense, [name], batches, config.rows, log, stop=name in once)
                _refit(name, mine[name], stats[name], config.ridge, log)
        else:
            stats = _accumulate(model, dense, names, batches, config.rows, log)
            for name in names:
                _refit(name, mine[name], stats[name], config.ridge, log)
    finally:
        dense.train(modes[1])
    model.eval()
    log.seconds = time.perf_counter() - started
    return log


def _take(data: Iterable, batches: int | None) -> list:
    out = []
    for i, batch in enumerate(data):
        if batches is not None and i >= batches:
            break
        out.append(batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch)
    return out


def _forward_order(model: nn.Module, dense: nn.Module, names: list[str], batch: Any,
                   log: ReconstructLog) -> tuple[list[str], set[str]]:
    """``names`` in the order one forward pass first calls them (unreached ones last, in module order),
    and those called exactly once per forward in both models (a pass may stop at them)."""
    calls: dict[str, list[int]] = {n: [0, 0] for n in names}
    seen: list[str] = []

    def hook(n: str, side: int) -> Callable:
        def count(m, i, o) -> None:
            calls[n][side] += 1
            if side == 0 and n not in seen:
                seen.append(n)
        return count

    handles = []
    for side, net in enumerate((model, dense)):
        modules = dict(net.named_modules())
        handles += [modules[n].register_forward_hook(hook(n, side)) for n in names]
    try:
        with torch.no_grad():
            call_model(model, batch)
            call_model(dense, batch)
        log.forward += 2
    finally:
        for h in handles:
            h.remove()
    return seen + [n for n in names if n not in seen], {n for n, c in calls.items() if c == [1, 1]}


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer being refit has been seen."""


class _Stats:
    """Running ``X^T X``, ``X^T Y`` and ``sum Y^2`` in float64 (X with a ones column for the bias)."""

    def __init__(self) -> None:
        self.a: torch.Tensor | None = None
        self.b: torch.Tensor | None = None
        self.yy = 0.0
        self.rows = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, bias: bool) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        y = y.reshape(-1, y.shape[-1]).double()
        if bias:
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        a, b = x.T @ x, x.T @ y
        self.a = a if self.a is None else self.a + a
        self.b = b if self.b is None else self.b + b
        self.yy += float((y * y).sum())
        self.rows += len(x)


def _accumulate(model: nn.Module, dense: nn.Module, names: list[str], batches: list, rows: RowsFn | None,
                log: ReconstructLog, stop: bool = False) -> dict[str, _Stats]:
    """One pass over ``batches`` through both models, pairing each layer's pruned inputs with the
    dense outputs of the same call; ``stop``: one layer, called once per forward: each pass ends
    as soon as it has been reached (its input in the pruned model, its output in the dense one)."""
    mine, theirs = dict(model.named_modules()), dict(dense.named_modules())
    stats = {n: _Stats() for n in names}
    for inputs in batches:
        got: dict[str, list] = {n: [] for n in names}
        want: dict[str, list] = {n: [] for n in names}
        def take(store: list, value: torch.Tensor) -> None:
            store.append(value.detach())
            if stop:
                raise _Stop

        handles = [mine[n].register_forward_pre_hook(lambda m, i, n=n: take(got[n], i[0])) for n in names]
        handles += [theirs[n].register_forward_hook(lambda m, i, o, n=n: take(want[n], o)) for n in names]
        try:
            with torch.no_grad():
                for net in (dense, model):
                    try:
                        call_model(net, inputs)
                    except _Stop:
                        pass
            log.forward += 2
        finally:
            for h in handles:
                h.remove()
        mask = rows(inputs) if rows is not None else None
        for n in names:
            if len(got[n]) != len(want[n]):
                raise UnsupportedModelError(f"{n} ran {len(got[n])} times in the pruned model but {len(want[n])} in the "
                                       f"dense one on the same batch")
            for x, y in zip(got[n], want[n]):
                if mask is not None:
                    if tuple(mask.shape) != tuple(x.shape[:-1]):
                        raise ValueError(f"rows mask of shape {tuple(mask.shape)} does not fit the input of "
                                               f"{n}, shape {tuple(x.shape)} (it must cover every dim but the last)")
                    x, y = x[mask.bool()], y[mask.bool()]
                stats[n].add(x, y, mine[n].bias is not None)
    return stats


@torch.no_grad()
def _refit(name: str, layer: nn.Linear, stats: _Stats, ridge: float, log: ReconstructLog) -> None:
    if stats.a is None or stats.rows == 0:
        log.skipped[name] = "no calibration rows reached it"
        return
    a, b = stats.a, stats.b
    t0 = layer.weight.detach().double().T                                       # (in, out)
    if layer.bias is not None:
        t0 = torch.cat([t0, layer.bias.detach().double()[None]], 0)              # (in + 1, out)
    lam = ridge * float(torch.diagonal(a).mean().clamp(min=1e-30))
    eye = torch.eye(len(a), dtype=a.dtype, device=a.device)
    t = torch.linalg.solve(a + lam * eye, b + lam * t0)

    def error(theta: torch.Tensor) -> float:  # |X T - Y|^2 / |Y|^2 from the accumulated statistics
        sq = float((theta * (a @ theta)).sum() - 2 * (theta * b).sum()) + stats.yy
        return max(sq, 0.0) / max(stats.yy, 1e-30)

    before, after = error(t0), error(t)
    if after > before:  # rounding only (the ridge towards T0 cannot do worse); keep the cut weights
        t, after = t0, before
    n_in = layer.in_features
    layer.weight.copy_(t[:n_in].T.to(layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.copy_(t[n_in].to(layer.bias.dtype))
    log.layers[name] = {"error_before": before, "error_after": after, "rows": float(stats.rows)}
