"""``mnist-vit``: a small vision transformer on the same 5,000-image MNIST subset as ``mnist``.

Written the way timm writes its ViT (one ``qkv`` Linear split by ``self.num_heads``), so that
attention heads, MLP hidden units and the residual width are all prunable, and the built-in tasks
cover a transformer. Shapes, for a (B, 1, 28, 28) input::

    patch   conv7x7 s7 1->64               (B, 64, 4, 4) -> 16 tokens
    tokens  [cls] + patches, + pos_embed   (B, 17, 64)
    blocks  4x pre-norm: attention (4 heads x 16) + MLP 64->128->64, both residual
    head    layer norm, linear on [cls]    (B, 10)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mnist import load_data
from ._task import Recipe, Task


class Attention(nn.Module):
    """Multi-head self-attention; ``num_heads`` and ``attn_dim`` size its reshapes."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = self.num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MnistViT(nn.Module):
    """The ``mnist-vit`` task's classifier (see the module docstring for shapes)."""

    def __init__(self, dim: int = 64, depth: int = 4, num_heads: int = 4, hidden: int = 128,
                 patch: int = 7, num_classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (28 // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 49, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


TASK = Task(
    name="mnist-vit",
    description="vision transformer (4 blocks, 4 heads x 16, 2.4M MACs, ~94%) on the MNIST subset of 'mnist'",
    model_factory=MnistViT,
    input_shape=(1, 28, 28),
    num_classes=10,
    data=load_data,
    recipe=Recipe(epochs=30, lr=2e-3, batch_size=64, weight_decay=0.05),
    version="1",
)
