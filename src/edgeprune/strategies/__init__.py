"""Strategies decide how many units each group loses; each returns removals that become a Plan."""
from edgeprune.strategies.base import lowest, make_plan, removable
from edgeprune.strategies.global_ import global_ranking
from edgeprune.strategies.uniform import uniform

STRATEGIES = {"uniform": uniform, "global": global_ranking}

__all__ = ["STRATEGIES", "global_ranking", "lowest", "make_plan", "removable", "uniform"]
