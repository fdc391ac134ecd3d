"""How much each residual block changes what flows through it: the Block Influence of ShortGPT.

Men et al. 2024 ("ShortGPT: Layers in Large Language Models are More Redundant Than You Expect")
score a transformer layer by ``BI = 1 - E[cos(x_in, x_out)]`` over its hidden states and remove the
layers that change them least. We take the cosine over each sample's whole hidden state (tokens
or feature map flattened), so one definition serves transformers and CNNs alike: a block whose
branches add nothing scores exactly 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.graph.trace import call_model
from edgeprune.specs import eval_mode


def block_influence(model: nn.Module, blocks: Sequence[str], batches: Iterable[Any]) -> dict[str, float]:
    """``{block: 1 - mean cosine(input, output)}`` over every sample of ``batches`` (model inputs).

    The model runs in eval mode without gradients; its modules' training flags are restored afterwards.
    """
    sums = {name: 0.0 for name in blocks}
    counts = {name: 0 for name in blocks}
    hooks = []
    for name in blocks:
        def hook(_m, args, out, name=name):
            x, y = args[0].flatten(1).float(), out.flatten(1).float()  # (B, features)
            cos = F.cosine_similarity(x, y, dim=1, eps=1e-12)
            sums[name] += float((1 - cos).sum())
            counts[name] += x.shape[0]
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            for inputs in batches:
                call_model(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return {name: sums[name] / max(counts[name], 1) for name in blocks}
