"""Activation criteria: how much a unit's output is used on real data.

``mean``: the mean of the rectified output ``max(y, 0)`` per channel (the activation criterion
that Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient
Inference", compare against). ``apoz``: the Average Percentage of Zeros after the rectifier (Hu
et al. 2016, "Network Trimming"); a unit that is mostly zero matters little, so its score is
``1 - APoZ``.

Statistics come from forward hooks on the modules that produce or normalise a group's units
(``edgeprune.criteria.data.collect_activations``). The criterion reads the group's per-unit layers
(the BatchNorm after a conv) when it has any, because they are nearest to the rectifier, else the
layers that produce the units. A residual sum is not a module; its channels are scored by the
mean over the branches that meet there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.criteria.base import ScoreContext
from edgeprune.graph.groups import Group


@dataclass(frozen=True)
class Activation:
    """Score = mean rectified activation (``stat="mean"``) or ``1 - APoZ`` (``stat="apoz"``) per unit.

    Example:
        >>> import torch, torch.nn as nn, edgeprune
        >>> from edgeprune.criteria.data import collect_activations
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> data = [(torch.randn(16, 4), torch.zeros(16, dtype=torch.long))]
        >>> g = edgeprune.analyze(m, data[0][0]).groups[0]
        >>> ctx = collect_activations(m, data).context(m)
        >>> Activation("apoz")(g, ctx).shape
        torch.Size([8])
    """

    stat: str = "mean"
    needs = frozenset({"activations"})

    def __call__(self, group: Group, ctx: ScoreContext) -> torch.Tensor:
        if self.stat not in ("mean", "apoz"):
            raise ValueError(f"stat must be 'mean' or 'apoz', got {self.stat!r}")
        by_role: dict[str, dict[str, torch.Tensor]] = {"out": {}, "channel": {}}
        for slot in group.slots:
            if slot.role not in by_role or slot.inner != 1 or slot.outer != 1:
                continue
            module = slot.tensor.rpartition(".")[0]
            stats = ctx.activations.get(module)
            if stats is None or stats[self.stat].numel() < slot.offset + group.size:
                continue
            by_role[slot.role][module] = stats[self.stat][slot.offset:slot.offset + group.size].float()
        # per-unit layers (BatchNorm) come after the layer that produces the units: nearer the rectifier.
        # A producer's own bias is a per-unit slot too; it does not make the producer a norm layer.
        norms = {m: v for m, v in by_role["channel"].items() if m not in by_role["out"]}
        chosen = norms or by_role["out"]
        if not chosen:
            raise KeyError(f"criterion 'activation' found no recorded activations for group {group.name!r}; "
                           f"collect them first (pass data= to edgeprune.prune, or see edgeprune.criteria.data)")
        score = torch.stack(list(chosen.values())).mean(0)
        return 1.0 - score if self.stat == "apoz" else score
