"""Parameter counts: total and nonzero, over the weights the forward pass actually uses.

A masked tensor (``torch.nn.utils.parametrize``, as ``edgeprune.surgery.masks`` does, or
``torch.nn.utils.prune``'s ``weight_orig``/``weight_mask``) is counted through its effective value
``original * mask``: its ``total`` is unchanged and its ``nonzero`` shows the sparsity.
A tensor shared by two modules (tied weights) is counted once.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of a model.

    Attributes:
        total: number of parameter values (dense size).
        nonzero: number of values that are not exactly zero.
    """

    total: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        """Fraction of values that are zero (0.0 for an empty model)."""
        return 1.0 - self.nonzero / self.total if self.total else 0.0


def count_params(model: nn.Module) -> ParamCount:
    """Count a model's parameters, total and nonzero (see the module docstring for masks).

    Args:
        model: any ``nn.Module``.

    Returns:
        A :class:`ParamCount`.

    Example:
        >>> count_params(nn.Linear(3, 2))
        ParamCount(total=8, nonzero=8)
    """
    total = nonzero = 0
    seen: set[int] = set()
    with torch.no_grad():
        for key, tensor in effective_parameters(model):
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    return ParamCount(total=total, nonzero=nonzero)


def effective_parameters(model: nn.Module) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(identity, tensor)`` for every parameter as the forward pass sees it.

    ``identity`` is the same for the same underlying parameter reached twice (tied weights).
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in module.parametrizations:
                original = module.parametrizations[name].original
                yield id(original), getattr(module, name)
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("_orig") and isinstance(getattr(module, name[:-5], None), torch.Tensor) \
                    and hasattr(module, name[:-5] + "_mask"):
                yield id(param), getattr(module, name[:-5])  # torch.nn.utils.prune: weight = orig * mask
            else:
                yield id(param), param


def is_masked(model: nn.Module) -> bool:
    """Whether any tensor of ``model`` is masked (a parametrization, or ``torch.nn.utils.prune``)."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            return True
        if any(name.endswith("_mask") for name, _ in module.named_buffers(recurse=False)) and \
                any(name.endswith("_orig") for name, _ in module.named_parameters(recurse=False)):
            return True
    return False
