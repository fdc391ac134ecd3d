"""What a prune returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from edgeprune.plan import Plan


@dataclass
class PruneResult:
    """The pruned model, the plan that made it, and notes on what was left alone and why.

    ``skipped`` maps a group name to the reason it was not pruned (a baked-in size, an op that
    edgeprune does not know, a protected output).
    """

    model: nn.Module
    plan: Plan
    skipped: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
