"""Which tensors are pruned, and how many of each one's values go.

``select_targets`` picks the tensors (protection, ignore, include); ``global_keep``,
``uniform_keep`` and ``nm_keep`` turn scores into keep masks; ``compute_masks`` runs the whole
policy for a :class:`WeightPruneConfig`. Nothing here changes a model.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase

import torch
import torch.nn as nn

from edgeprune.criteria.base import ScoreContext
from edgeprune.surgery.masks import masked_name, masks_of
from edgeprune.weights.config import WeightPruneConfig
from edgeprune.weights.nm import nm_keep_mask
from edgeprune.weights.scores import GRADIENT_SCORES, SCORES

__all__ = ["select_targets", "global_keep", "uniform_keep", "nm_keep", "compute_masks"]


def _ignored(config: WeightPruneConfig, module_name: str, tensor_name: str, module: nn.Module) -> str | None:
    for rule in config.ignore:
        if isinstance(rule, str):
            if fnmatchcase(module_name, rule) or fnmatchcase(tensor_name, rule):
                return f"ignored by {rule!r}"
        elif isinstance(module, rule):
            return f"ignored by type {rule.__name__}"
    return None


def select_targets(model: nn.Module, config: WeightPruneConfig) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors a prune touches, in registration order, and those it leaves alone with why.

    Args:
        model: the model (read only).
        config: protection, ``ignore``, ``include`` and layer types.

    Returns:
        ``(targets, skipped)``: tensor name -> current (masked) values, and tensor name -> reason.
    """
    layers: list[tuple[str, str, nn.Module]] = []  # (module name, tensor name, module)
    for name, module in model.named_modules():
        if isinstance(module, config.layer_types) and isinstance(getattr(module, "weight", None), torch.Tensor):
            layers.append((name, f"{name}.weight" if name else "weight", module))
    first = layers[0][1] if layers else None
    last = layers[-1][1] if layers else None
    targets: dict[str, torch.Tensor] = {}
    skipped: dict[str, str] = {}
    for module_name, tensor_name, module in layers:
        reason = _ignored(config, module_name, tensor_name, module)
        if reason is None and config.protect_first and tensor_name == first:
            reason = "protected: first layer (protect_first)"
        elif reason is None and config.protect_last and tensor_name == last:
            reason = "protected: last layer (protect_last)"
        if reason:
            skipped[tensor_name] = reason
        else:
            targets[tensor_name] = module.weight.detach()
    if config.include:
        modules = dict(model.named_modules())
        for tensor_name, tensor in _named_tensors(model):
            if tensor_name in targets or tensor_name in skipped:
                continue
            if any(fnmatchcase(tensor_name, g) for g in config.include):
                module_name = tensor_name.rpartition(".")[0]
                reason = _ignored(config, module_name, tensor_name, modules[module_name])
                if reason:
                    skipped[tensor_name] = reason
                else:
                    targets[tensor_name] = tensor
    return targets, skipped


def _named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    # Parameters by their plain name ("fc.weight"), masked ones included, with their current values.
    out = []
    for module_name, module in model.named_modules():
        if ".parametrizations." in f".{module_name}.":  # a mask's internals, named via their owner
            continue
        names = [n for n, _ in module.named_parameters(recurse=False)]
        if hasattr(module, "parametrizations"):
            names += list(module.parametrizations.keys())
        for attr in names:
            full = f"{module_name}.{attr}" if module_name else attr
            out.append((full, getattr(module, attr).detach()))
    return out


def global_keep(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold over all tensors: the ``round(sparsity * total)`` lowest scores go.

    Ties are broken by position, so the count is exact.

    Args:
        scores: tensor name -> scores (comparable across tensors).
        sparsity: the fraction of all values to drop.

    Returns:
        tensor name -> boolean keep mask.
    """
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).double() for n in names]) if names else torch.zeros(0)
    drop = int(round(sparsity * flat.numel()))
    keep_flat = torch.ones(flat.numel(), dtype=torch.bool)
    keep_flat[torch.argsort(flat, stable=True)[:drop]] = False
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep_flat[start:start + size].reshape(scores[n].shape)
        start += size
    return out


def uniform_keep(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Every tensor loses the same fraction: its ``round(sparsity * numel)`` lowest scores.

    Args:
        scores: tensor name -> scores.
        sparsity: the fraction of each tensor's values to drop.

    Returns:
        tensor name -> boolean keep mask.
    """
    return {n: global_keep({n: s}, sparsity)[n] for n, s in scores.items()}


def nm_keep(scores: Mapping[str, torch.Tensor], n: int, m: int, dim: int = 1) -> dict[str, torch.Tensor]:
    """N of every M along ``dim`` kept, in every tensor.

    Args:
        scores: tensor name -> scores; ``shape[dim]`` must be a multiple of ``m``.
        n: kept per group.
        m: group size.
        dim: the grouped dimension.

    Returns:
        tensor name -> boolean keep mask.
    """
    return {name: nm_keep_mask(s, n, m, dim) for name, s in scores.items()}


def _scorer(config: WeightPruneConfig, gradients: ScoreContext | None,
            generator: torch.Generator) -> Callable[[str, torch.Tensor], torch.Tensor]:
    """``score(tensor name, values) -> scores`` for ``config``. A masked tensor's gradients are those
    of its parametrization's original, which equal the masked weight's where the mask keeps."""
    name = config.scores
    if name in GRADIENT_SCORES:
        if gradients is None:
            raise ValueError(f"criterion {name!r} needs gradients: pass calibration data")
        return lambda tensor, _: GRADIENT_SCORES[name](
            tensor if tensor in gradients.tensors else masked_name(tensor), gradients)
    fn = SCORES["random" if name == "random" else ("magnitude" if config.nm is not None else name)]
    return lambda _, values: fn(values, generator)


def compute_masks(model: nn.Module, config: WeightPruneConfig, gradients: ScoreContext | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Run the policy of ``config`` on ``model``: keep masks for the pruned tensors.

    Values that a mask on ``model`` already hides score lowest, so pruning a masked model again
    to a higher sparsity only adds zeros (the gradual schedule relies on this).

    Args:
        model: the model (read only); it may already carry masks.
        config: the configuration.
        gradients: for ``criterion="taylor"`` or ``"fisher"``: the model's tensors with the gradient
            statistics of ``edgeprune.criteria.data.collect_gradients`` (``Collected.context(model)``).

    Returns:
        ``(masks, skipped)``: tensor name -> boolean keep mask, and tensor name -> reason left dense.
    """
    targets, skipped = select_targets(model, config)
    if config.nm is not None:
        m = config.nm[1]
        for name in list(targets):
            t = targets[name]
            if t.dim() < 2 or t.shape[config.nm_dim] % m:
                size = t.shape[config.nm_dim] if t.dim() >= 2 else t.numel()
                skipped[name] = f"N:M: dimension {config.nm_dim} has size {size}, not a multiple of {m}"
                del targets[name]
    score = _scorer(config, gradients, torch.Generator().manual_seed(config.seed))
    current = masks_of(model)
    scores = {}
    for name, tensor in targets.items():
        s = score(name, tensor).double()
        if name in current:  # already masked: those values go first
            s = torch.where(current[name].to(s.device), s, torch.full_like(s, -1.0))
        scores[name] = s
    if config.nm is not None:
        masks = nm_keep(scores, config.nm[0], config.nm[1], config.nm_dim)
    elif config.spread == "global":
        masks = global_keep(scores, float(config.sparsity))
    else:
        masks = uniform_keep(scores, float(config.sparsity))
    return masks, skipped
