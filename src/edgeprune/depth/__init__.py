"""Depth pruning: residual blocks found in the forward pass, scored by Block Influence, dropped whole."""
from edgeprune.depth.find import residual_blocks
from edgeprune.depth.influence import block_influence
from edgeprune.depth.prune import prune_blocks

__all__ = ["residual_blocks", "block_influence", "prune_blocks"]
