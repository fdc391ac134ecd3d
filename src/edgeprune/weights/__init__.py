"""Weight pruning: unstructured and N:M sparsity as reversible masks.

    from edgeprune import prune_weights
    result = prune_weights(model, 0.9, allocation="lamp")     # masked copy + plan
    ... fine-tune result.model; the zeros hold ...
    from edgeprune.surgery.masks import finalize
    finalize(result.model)                                    # plain nn.Module, zeros baked in

A masked model is as fast as the dense one; the gain is a smaller file
(``edgeprune.export.sparse_onnx``) and, for 2:4 on hardware with sparse kernels, a runtime that
can use the pattern.
"""
from edgeprune.weights.config import WeightPruneConfig
from edgeprune.weights.gradual import GradualWeightPruner
from edgeprune.weights.nm import check_nm, nm_report
from edgeprune.schedule import cubic_sparsity
from edgeprune.weights.table import render_sparsity_table, sparsity_table

__all__ = ["WeightPruneConfig", "GradualWeightPruner", "cubic_sparsity",
           "check_nm", "nm_report", "sparsity_table", "render_sparsity_table"]
