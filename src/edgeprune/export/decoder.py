"""Decoder language models as files a runtime runs: without a cache, prefill, and one decode step.

A Hugging Face causal LM keeps its key/value cache in a ``Cache`` object, which no exporter takes
as an input. These wrappers turn the cache into plain tensors, one key and one value per layer,
shaped ``(batch, kv_heads, tokens, head_dim)``, so that the three ways a decoder runs on a device
export and time like any model:

* ``NoCache(model)``: ``ids (B, T) -> logits (B, T, V)`` with ``use_cache=False``;
* ``Prefill(model)``: ``ids (B, T) -> logits, k_0, v_0, k_1, v_1, ...`` (the cache after the prompt);
* ``DecodeStep(model)``: ``ids (B, 1), k_0, v_0, ... (past T tokens) -> logits (B, 1, V), k_0, v_0, ...``
  (T + 1 tokens): the cost of each generated token.

A pruned decoder has fewer query heads, and with whole key/value groups cut, fewer cached heads:
the cache shapes follow ``k_proj``'s rows.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _cache(past: tuple[torch.Tensor, ...]):
    from transformers import DynamicCache

    if len(past) % 2:
        raise ValueError(f"past holds {len(past)} tensors; expected a key and a value per layer")
    return DynamicCache([(past[i], past[i + 1]) for i in range(0, len(past), 2)])


def _flat(cache) -> tuple[torch.Tensor, ...]:
    return tuple(t for layer in cache.layers for t in (layer.keys, layer.values))


class NoCache(nn.Module):
    """``ids -> logits`` with the cache disabled (every token attends to the prompt afresh)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


class Prefill(nn.Module):
    """``ids -> (logits, k_0, v_0, ...)``: the prompt's logits and the cache it leaves."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=input_ids, cache=_cache(()), use_cache=True)
        return (out.logits, *_flat(out.past_key_values))


class DecodeStep(nn.Module):
    """``(ids (B, 1), k_0, v_0, ...) -> (logits (B, 1, V), k_0, v_0, ...)``: one generated token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = _cache(past)
        start = past[0].shape[-2]
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        out = self.model(input_ids=input_ids, cache=cache, position_ids=positions, use_cache=True)
        return (out.logits, *_flat(out.past_key_values))


@torch.no_grad()
def decode_inputs(model: nn.Module, prompt: torch.Tensor, next_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The inputs of ``DecodeStep(model)`` after ``prompt``: ``(next_ids, k_0, v_0, ...)``.

    Args:
        model: the causal LM (eval mode).
        prompt: token ids (B, T).
        next_ids: the next token ids (B, 1).
    """
    return (next_ids, *Prefill(model)(prompt)[1:])
