"""The whole configuration of a weight prune, at a glance."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from edgeprune.weights.nm import parse_nm
from edgeprune.weights.scores import WEIGHT_CRITERIA

__all__ = ["WeightPruneConfig", "ALLOCATIONS", "WEIGHT_CRITERIA", "DEFAULT_LAYER_TYPES", "plan_kind", "weight_criterion"]

# allocation name -> (score function name, how the sparsity is spread)
ALLOCATIONS: dict[str, tuple[str, str]] = {
    "global": ("magnitude", "global"),   # one magnitude threshold over all pruned tensors
    "uniform": ("magnitude", "uniform"),  # every tensor at the same sparsity, by magnitude
    "lamp": ("lamp", "global"),          # one threshold over LAMP scores (layer-adaptive)
    "random": ("random", "uniform"),     # every tensor at the same sparsity, chosen at random
}



def weight_criterion(name: str | None) -> str:
    """The weight criterion a channel-criterion name means: ``taylor``/``fisher`` as themselves, the
    magnitude norms (``l1``, ``l2``, their ``-out`` forms, ``None``) as ``magnitude``.

    Raises:
        ValueError: a criterion with no per-weight form (``bn``, ``activation``, ``apoz``, ``random``).
    """
    if name is not None and not isinstance(name, str):
        raise ValueError("weight pruning takes a criterion name: 'magnitude' (or l1/l2), 'taylor' or 'fisher'")
    if name is None or name in ("l1", "l2", "l1-out", "l2-out"):
        return "magnitude"
    if name in WEIGHT_CRITERIA:
        return name
    raise ValueError(f"criterion {name!r} has no per-weight form; weight pruning takes "
                     f"{', '.join(WEIGHT_CRITERIA)} (or l1/l2, meaning magnitude)")


DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class WeightPruneConfig:
    """What to mask and how.

    Attributes:
        sparsity: fraction of the *pruned tensors'* values to zero (tensors left out by protection,
            ``ignore`` or an N:M size mismatch do not count). ``None`` for an N:M pattern, whose
            sparsity is ``1 - N/M``; if given with N:M it must equal that.
        pattern: ``"unstructured"`` or ``"N:M"`` (``"2:4"``, ``"4:8"``, any 0 < N < M).
        allocation: how the sparsity is spread over tensors: ``"global"`` (magnitude, one
            threshold), ``"uniform"`` (magnitude, same sparsity per tensor), ``"lamp"`` (LAMP
            scores, one threshold), ``"random"``. N:M patterns are per group, so allocation only
            picks the scores there (``"random"`` random, otherwise magnitude).
        layer_types: modules whose ``weight`` is pruned.
        protect_first: keep the first such layer (in registration order) dense. It sees the raw
            input and is usually both small and sensitive in CNNs; turn this off for MLPs, whose
            first layer holds most of the weights.
        protect_last: keep the last such layer (usually the classifier) dense.
        ignore: leave these alone: a glob on the module or tensor name (``"head.*"``,
            ``"*.downsample.*"``) or a module type (``nn.Conv1d``).
        include: further tensors to prune, by glob on the tensor name (``"embed.weight"``).
        nm_dim: the dimension N:M groups run along (1: input features / input channels).
        seed: the random source for ``"random"``.
        criterion: what ranks the weights under a ``"global"`` or ``"uniform"`` allocation or an N:M
            pattern: ``"magnitude"``, or ``"taylor"`` / ``"fisher"``, which need calibration data
            (``prune_weights(..., data=...)``). ``"lamp"`` and ``"random"`` bring their own scores.
    """

    sparsity: float | None = 0.5
    pattern: str = "unstructured"
    allocation: str = "global"
    layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES
    protect_first: bool = True
    protect_last: bool = True
    ignore: tuple[str | type[nn.Module], ...] = ()
    include: tuple[str, ...] = ()
    nm_dim: int = 1
    seed: int = 0
    criterion: str = "magnitude"
    nm: tuple[int, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation {self.allocation!r} is not one of {sorted(ALLOCATIONS)}")
        if self.criterion not in WEIGHT_CRITERIA:
            raise ValueError(f"criterion {self.criterion!r} is not one of {list(WEIGHT_CRITERIA)}")
        if self.criterion != "magnitude" and self.allocation in ("lamp", "random"):
            raise ValueError(f"allocation {self.allocation!r} ranks by its own scores; criterion="
                             f"{self.criterion!r} goes with allocation 'global' or 'uniform'")
        if isinstance(self.ignore, (str, type)) or isinstance(self.include, str):
            raise TypeError("ignore and include take a tuple of names/types, not a single one")
        if self.pattern == "unstructured":
            if self.sparsity is None or not 0.0 <= float(self.sparsity) < 1.0:
                raise ValueError(f"sparsity must be in [0, 1) for unstructured pruning, got {self.sparsity!r}")
            return
        n, m = parse_nm(self.pattern)
        object.__setattr__(self, "nm", (n, m))
        implied = 1.0 - n / m
        if self.sparsity is None:
            object.__setattr__(self, "sparsity", implied)
        elif abs(float(self.sparsity) - implied) > 1e-9:
            raise ValueError(f"pattern {self.pattern} means sparsity {implied:g} in every group; "
                             f"sparsity={self.sparsity!r} contradicts it (pass None)")

    @property
    def scores(self) -> str:
        """The score function's name: the criterion, unless the allocation brings its own."""
        own = ALLOCATIONS[self.allocation][0]
        return own if own != "magnitude" else self.criterion

    @property
    def needs_gradients(self) -> bool:
        return WEIGHT_CRITERIA[self.criterion] == "gradients"

    @property
    def spread(self) -> str:
        return ALLOCATIONS[self.allocation][1]

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready record of this configuration, for ``Plan.meta``."""
        return {
            "sparsity": self.sparsity, "pattern": self.pattern, "allocation": self.allocation,
            "layer_types": [t.__name__ for t in self.layer_types],
            "protect_first": self.protect_first, "protect_last": self.protect_last,
            "ignore": [i if isinstance(i, str) else i.__name__ for i in self.ignore],
            "include": list(self.include), "nm_dim": self.nm_dim, "seed": self.seed, "criterion": self.criterion,
        }


def plan_kind(config: WeightPruneConfig) -> str:
    """The ``Plan.kind`` for a configuration: ``"weights"``, or the N:M pattern (``"2:4"``)."""
    return "weights" if config.nm is None else f"{config.nm[0]}:{config.nm[1]}"
