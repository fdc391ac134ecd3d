"""Small models that each exercise one coupling the engine must get right."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualCNN(nn.Module):
    """Two residual stages; the second changes width through a projected shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.a1, self.a2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(16)
        self.b1, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.Conv2d(32, 32, 3, padding=1)
        self.short = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.bn_a(self.a2(F.relu(self.a1(x)))))
        x = F.relu(self.short(x) + self.b2(F.relu(self.b1(x))))
        return self.head(x.mean((2, 3)))


class DenseConcat(nn.Module):
    """DenseNet-style: each layer reads the concatenation of everything before it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.l1 = nn.Sequential(nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 8, 3, padding=1))
        self.l2 = nn.Sequential(nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 8, 3, padding=1))
        self.trans = nn.Sequential(nn.BatchNorm2d(28), nn.ReLU(), nn.Conv2d(28, 16, 1))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.l1(x)], 1)
        x = torch.cat([x, self.l2(x)], dim=1)
        x = self.trans(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1, residual when shapes agree."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.block(x)


class MobileNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(16), InvertedResidual(16))
        self.dw_mult = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # depthwise with channel multiplier 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 8 * 8, 10))

    def forward(self, x):
        return self.classifier(F.relu(self.dw_mult(self.blocks(self.stem(x)))))


class GroupedConv(nn.Module):
    """ResNeXt-style bottleneck with a grouped 3x3 (4 groups)."""

    def __init__(self) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(8, 32, 1)
        self.bn1 = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.bn2 = nn.BatchNorm2d(32)
        self.expand = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        y = F.relu(self.bn1(self.reduce(x)))
        y = F.relu(self.bn2(self.grouped(y)))
        return x + self.expand(y)


class SqueezeExcite(nn.Module):
    """A conv whose output is rescaled per channel by a gate computed from itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.fc1 = nn.Conv2d(24, 6, 1)
        self.fc2 = nn.Conv2d(6, 24, 1)
        self.out = nn.Conv2d(24, 4, 1)

    def forward(self, x):
        x = F.silu(self.conv(x))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.out(x * gate)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.PReLU(32), nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)


class TimeSeriesCNN(nn.Module):
    """1D CNN for sequences, flattened into a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Conv1d(16, 24, 3, stride=2, padding=1), nn.BatchNorm1d(24), nn.ReLU())
        self.head = nn.Linear(24 * 20, 6)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class TwoInputs(nn.Module):
    """Image and tabular branches fused by concatenation, called with keyword inputs too."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.table = nn.Sequential(nn.Linear(7, 12), nn.ReLU())
        self.fuse = nn.Linear(28, 4)

    def forward(self, image, table):
        return self.fuse(torch.cat([self.image(image), self.table(table)], dim=1))


class ChunkedGate(nn.Module):
    """A conv split in two halves that gate each other (GLU-style), plus a transposed conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a, b = self.conv(x).chunk(2, dim=1)
        return self.out(F.relu(self.up(a * torch.sigmoid(b))))


class TransformerMLP(nn.Module):
    """Pre-norm transformer MLP block over tokens: the hidden units are the prunable part."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.norm = nn.LayerNorm(16)
        self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(64, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, tokens):
        x = self.embed(tokens)
        x = x + self.fc2(F.gelu(self.fc1(self.norm(x))))
        return self.head(x[:, 0])


class HeadAttention(nn.Module):
    """Multi-head self-attention written as timm writes it: one ``qkv`` Linear split into
    ``(3, num_heads, head_dim)``, sizes read from module attributes."""

    def __init__(self, dim: int = 24, num_heads: int = 4, head_dim: int = 8) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.attn_dim = num_heads * head_dim
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class SeparateProjectionAttention(nn.Module):
    """Attention with separate q, k, v projections, fused attention and a ``-1`` in the merge."""

    def __init__(self, dim: int = 24, heads: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = (f(x).view(B, N, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        x = F.scaled_dot_product_attention(q, k, v, scale=0.25)  # (B, heads, N, head_dim)
        return self.out(x.transpose(1, 2).reshape(B, N, -1))


class TinyViT(nn.Module):
    """Patch embedding, two pre-norm blocks (attention + MLP), class-token head."""

    def __init__(self, dim: int = 24) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList()
        for attn in (HeadAttention(dim), SeparateProjectionAttention(dim)):
            self.blocks.append(nn.ModuleDict({"norm1": nn.LayerNorm(dim), "attn": attn, "norm2": nn.LayerNorm(dim),
                                              "fc1": nn.Linear(dim, 2 * dim), "fc2": nn.Linear(2 * dim, dim)}))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, tokens, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        for b in self.blocks:
            x = x + b["attn"](b["norm1"](x))
            x = x + b["fc2"](F.gelu(b["fc1"](b["norm2"](x))))
        return self.head(x[:, 0])


def example_input(model: nn.Module):
    """An input for each zoo model."""
    g = torch.Generator().manual_seed(0)
    shapes = {MLP: (2, 20), TimeSeriesCNN: (2, 2, 40), GroupedConv: (1, 8, 10, 10), MobileNetLike: (1, 3, 16, 16)}
    if isinstance(model, TwoInputs):
        return {"image": torch.randn(2, 3, 12, 12, generator=g), "table": torch.randn(2, 7, generator=g)}
    if isinstance(model, TransformerMLP):
        return torch.randint(0, 50, (2, 9), generator=g)
    if isinstance(model, (HeadAttention, SeparateProjectionAttention)):
        return torch.randn(2, 7, 24, generator=g)
    return torch.randn(*shapes.get(type(model), (2, 3, 16, 16)), generator=g)


EQUIVALENCE_ZOO = [ResidualCNN, DenseConcat, MobileNetLike, GroupedConv, SqueezeExcite, MLP, TimeSeriesCNN,
                   TwoInputs, ChunkedGate, TransformerMLP, HeadAttention, SeparateProjectionAttention, TinyViT]
