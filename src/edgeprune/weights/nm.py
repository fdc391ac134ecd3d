"""N:M semi-structured sparsity: at most N non-zeros in every group of M consecutive values.

Groups run along the *input* dimension (``dim=1``) of a weight, the NVIDIA ASP convention:

* ``nn.Linear`` weight ``(out, in)``: for each output row, groups of M consecutive input features.
* ``nn.Conv{1,2,3}d`` weight ``(out, in/groups, *kernel)``: for each output channel and each kernel
  position, groups of M consecutive *input channels*. This is ASP's
  ``permute(2, 3, 0, 1).reshape(kh * kw * out, in)`` layout, where sparse tensor cores see the
  reduction axis as ``in_channels x kh x kw`` with the input channel innermost (NHWC).

A dimension whose size is not a multiple of M cannot hold the pattern; such tensors are left
dense and reported as skipped by :func:`edgeprune.weights.prune_weights`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

__all__ = ["parse_nm", "nm_keep_mask", "check_nm", "nm_report", "NMReport"]

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(pattern: str) -> tuple[int, int]:
    """Read ``"N:M"`` (e.g. ``"2:4"``) into ``(n, m)``.

    Args:
        pattern: text of the form ``"N:M"`` with ``0 < N < M``.

    Returns:
        ``(n, m)``.

    Raises:
        ValueError: the text is not an N:M pattern with 0 < N < M.
    """
    match = _NM.match(pattern)
    if not match:
        raise ValueError(f"{pattern!r} is not an N:M pattern such as '2:4'")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {pattern!r} needs 0 < N < M")
    return n, m


def _grouped(tensor: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    # (..., size, ...) -> (rest, size // m, m), groups of m consecutive values along `dim`.
    size = tensor.shape[dim]
    if size % m:
        raise ValueError(f"dimension {dim} has size {size}, not a multiple of M={m}")
    moved = tensor.movedim(dim, -1)
    return moved.reshape(-1, size // m, m)


def nm_keep_mask(scores: torch.Tensor, n: int, m: int, dim: int = 1) -> torch.Tensor:
    """Keep the N highest-scoring values of every group of M along ``dim``.

    Args:
        scores: importance of each value (e.g. ``weight.abs()``); any shape.
        n: values kept per group.
        m: group size; ``scores.shape[dim]`` must be a multiple of it.
        dim: the dimension the groups run along (1 = input features / input channels).

    Returns:
        A boolean keep mask of ``scores``' shape with exactly N True per group.

    Raises:
        ValueError: ``scores.shape[dim]`` is not a multiple of ``m``.

    Example:
        >>> nm_keep_mask(torch.tensor([[4., 1., 3., 2.]]), 2, 4).tolist()
        [[True, False, True, False]]
    """
    dim = dim % scores.dim()
    groups = _grouped(scores, m, dim)  # (rest, G, m)
    top = groups.topk(n, dim=-1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    moved_shape = scores.movedim(dim, -1).shape
    return keep.reshape(moved_shape).movedim(-1, dim)


@dataclass(frozen=True)
class NMReport:
    """How a tensor meets an N:M pattern: ``ok`` when no group holds more than N non-zeros."""

    n: int
    m: int
    dim: int
    groups: int
    violations: int
    max_nonzero: int

    @property
    def ok(self) -> bool:
        return self.violations == 0


def nm_report(tensor: torch.Tensor, n: int, m: int, dim: int = 1) -> NMReport:
    """Count the groups of M along ``dim`` that hold more than N non-zeros.

    Args:
        tensor: the values to check (a weight, or a keep mask).
        n: allowed non-zeros per group.
        m: group size; ``tensor.shape[dim]`` must be a multiple of it.
        dim: the dimension the groups run along.

    Returns:
        An :class:`NMReport`.

    Raises:
        ValueError: ``tensor.shape[dim]`` is not a multiple of ``m``.
    """
    dim = dim % tensor.dim()
    counts = (_grouped(tensor.detach(), m, dim) != 0).sum(-1)  # (rest, G)
    return NMReport(n=n, m=m, dim=dim, groups=int(counts.numel()),
                    violations=int((counts > n).sum()), max_nonzero=int(counts.max()) if counts.numel() else 0)


def check_nm(tensor: torch.Tensor, n: int, m: int, dim: int = 1) -> bool:
    """Whether ``tensor`` has at most N non-zeros in every group of M consecutive values along ``dim``.

    Args:
        tensor: the values to check.
        n: allowed non-zeros per group.
        m: group size.
        dim: the dimension the groups run along (1 for Linear and Conv weights, see the module doc).

    Returns:
        True when the pattern holds; False when a group breaks it or ``tensor.shape[dim]`` is not a
        multiple of ``m`` (the pattern cannot hold then).

    Example:
        >>> check_nm(torch.tensor([[1., 0., 0., 2.], [0., 3., 4., 5.]]), 2, 4)
        False
    """
    if tensor.dim() == 0 or tensor.shape[dim] % m:
        return False
    return nm_report(tensor, n, m, dim).ok
