"""Module attributes that must follow their tensors' new shapes (one rule per module family)."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd


def _conv(m: _ConvNd) -> None:
    w = m.weight
    if m.transposed:
        m.in_channels = w.shape[0]
        m.out_channels = w.shape[1] * m.groups
        return
    if m.groups > 1 and w.shape[1] == 1 and m.in_channels == m.groups:
        # Depthwise (with channel multiplier): groups follow the channel count.
        multiplier = m.out_channels // m.groups
        m.groups = w.shape[0] // multiplier
        m.in_channels = m.groups
    else:
        m.in_channels = w.shape[1] * m.groups
    m.out_channels = w.shape[0]


def _linear(m: nn.Linear) -> None:
    m.out_features, m.in_features = m.weight.shape


def _norm(m: _NormBase) -> None:
    ref = m.weight if m.weight is not None else m.running_mean
    if ref is not None:
        m.num_features = ref.shape[0]


def _layer_norm(m: nn.LayerNorm) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


def _group_norm(m: nn.GroupNorm) -> None:
    if m.weight is not None:
        m.num_channels = m.weight.shape[0]


def _prelu(m: nn.PReLU) -> None:
    m.num_parameters = m.weight.numel()


def _embedding(m: nn.Embedding) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


def _rms_norm(m: nn.Module) -> None:
    if getattr(m, "weight", None) is not None:
        m.normalized_shape = tuple(m.weight.shape)


UPDATERS = [
    (_ConvNd, _conv), (nn.Linear, _linear), (_NormBase, _norm), (nn.LayerNorm, _layer_norm),
    (nn.GroupNorm, _group_norm), (nn.PReLU, _prelu), (nn.Embedding, _embedding),
]
if hasattr(nn, "RMSNorm"):
    UPDATERS.append((nn.RMSNorm, _rms_norm))


def update_module_attributes(module: nn.Module) -> None:
    """Make ``in_channels``, ``num_features``, ``normalized_shape``... agree with the module's tensors."""
    for cls, update in UPDATERS:
        if isinstance(module, cls):
            update(module)
            return
