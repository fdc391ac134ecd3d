"""A seeded generator of small random PyTorch architectures built from what real models use.

``build(seed)`` returns a ``Generated`` (the model, its example inputs and a description). The
same seed always gives the same architecture and weights. A model is a stem conv, a random chain
of cells on an ``(N, C, H, W)`` feature map, and one or two heads:

* cells: conv (plain, grouped, depthwise with a channel multiplier; BN / GN / none; activations,
  some in place), residual (``x + f(x)``, ``y += x``, ``relu_`` after), dense concat, split /
  chunk (a pass-through half, or a GLU gate), squeeze-and-excitation (Linear or 1x1 conv),
  tied weights (two convs sharing one weight), a module called twice, per-channel buffers, a
  Python-level reshape with literal sizes, pooling, attention over the pixels (fused qkv or
  separate projections, grouped-query with ``num_key_value_heads < num_heads``, SDPA or eager,
  switchable after pruning through ``impl``), a second input mixed in (FiLM-like);
* heads: global pooling into a Linear, or ``flatten`` into a Linear (the Linear reads each
  channel H*W times); optionally a second output (a tuple or a dict).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE = 8  # input height and width: tiny, so 50 models run in seconds


def _divisors(n: int, options=(1, 2, 4)) -> list[int]:
    return [d for d in options if n % d == 0]


def _norm(rng: random.Random, c: int) -> nn.Module:
    kind = rng.choice(["bn", "bn", "gn", "none"])
    if kind == "bn":
        return nn.BatchNorm2d(c)
    if kind == "gn":
        return nn.GroupNorm(rng.choice(_divisors(c, (1, 2, 4))), c)
    return nn.Identity()


def _act(rng: random.Random) -> nn.Module:
    return rng.choice([nn.ReLU(), nn.ReLU(inplace=True), nn.Hardswish(), nn.SiLU(), nn.Identity()])


class ConvCell(nn.Module):
    """Conv -> norm -> activation; plain, grouped or depthwise (with a channel multiplier)."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        style = rng.choice(["plain", "plain", "grouped", "depthwise"])
        if style == "depthwise":
            out, groups = c * rng.choice([1, 1, 2]), c
        elif style == "grouped" and len(_divisors(c, (2, 4))) > 0:
            groups = rng.choice(_divisors(c, (2, 4)))
            out = groups * rng.choice([2, 3, 4])
        else:
            groups, out = 1, rng.choice([4, 6, 8, 12])
        k = rng.choice([1, 3])
        self.conv = nn.Conv2d(c, out, k, padding=k // 2, groups=groups, bias=rng.random() < 0.5)
        self.norm, self.act = _norm(rng, out), _act(rng)
        self.c_out = out

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Residual(nn.Module):
    """``x + f(x)`` with f two convs; the add is written out of place or in place."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        mid = rng.choice([4, 8])
        self.f = nn.Sequential(nn.Conv2d(c, mid, 3, padding=1), _norm(rng, mid), nn.ReLU(),
                               nn.Conv2d(mid, c, 1), _norm(rng, c))
        self.inplace_add, self.relu_after = rng.random() < 0.4, rng.random() < 0.4
        self.c_out = c

    def forward(self, x):
        y = self.f(x)
        if self.inplace_add:
            y += x
        else:
            y = x + y
        return y.relu_() if self.relu_after else y


class DenseConcat(nn.Module):
    """``cat([x, conv(x)], 1)``: the reader of the result sees x's units then the new ones."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        grow = rng.choice([2, 4])
        self.conv = nn.Conv2d(c, grow, 3, padding=1)
        self.first = rng.random() < 0.5
        self.c_out = c + grow

    def forward(self, x):
        new = F.relu(self.conv(x))
        return torch.cat([x, new] if self.first else [new, x], dim=1)


class Split(nn.Module):
    """Split channels in two: convolve one half and pass the other, or gate one by the other (GLU)."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.mode = rng.choice(["chunk", "split", "shape_split", "tensor_split", "glu"])
        self.sizes = [(c + 1) // 2, c // 2] if self.mode != "split" else [c - c // 3, c // 3]  # chunk's sizes
        if self.mode == "glu":
            self.sizes = [c // 2, c // 2]
            self.pre = nn.Conv2d(c, c - c % 2, 1)
            self.c_out = c // 2
        else:
            self.conv = nn.Conv2d(self.sizes[0], self.sizes[0], 3, padding=1)
            self.c_out = c

    def forward(self, x):
        if self.mode == "glu":
            a, b = self.pre(x).chunk(2, dim=1)
            return a * torch.sigmoid(b)
        if self.mode == "chunk":
            a, b = x.chunk(2, dim=1)
        elif self.mode == "tensor_split":
            a, b = torch.tensor_split(x, 2, dim=1)
        elif self.mode == "shape_split":  # a size read from the tensor in Python
            a, b = x.split([(x.shape[1] + 1) // 2, x.shape[1] // 2], dim=1)
        else:
            a, b = torch.split(x, self.sizes, dim=1)
        return torch.cat([F.relu(self.conv(a)), b], dim=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the pooled map: two Linears, or two 1x1 convs."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        mid = rng.choice([2, 4])
        self.linear = rng.random() < 0.5
        if self.linear:
            self.fc1, self.fc2 = nn.Linear(c, mid), nn.Linear(mid, c)
        else:
            self.fc1, self.fc2 = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)
        self.c_out = c

    def forward(self, x):
        if self.linear:
            s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
            return x * s[:, :, None, None]
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * s


class Tied(nn.Module):
    """Two convs that share one weight tensor (tied weights)."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b = nn.Conv2d(c, c, 3, padding=1, bias=True)
        self.b.weight = self.a.weight
        self.c_out = c

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


class Twice(nn.Module):
    """One module called twice in a forward."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.c_out = c

    def forward(self, x):
        return self.conv(F.relu(self.conv(x)))


class Buffered(nn.Module):
    """Per-channel buffers (a fixed scale and shift), persistent or not."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.rand(1, c, 1, 1) + 0.5)
        self.register_buffer("shift", torch.randn(1, c, 1, 1), persistent=rng.random() < 0.5)
        self.c_out = c

    def forward(self, x):
        return x * self.scale + self.shift


class LiteralReshape(nn.Module):
    """A reshape with sizes written as literals at build time (the probe must catch them)."""

    def __init__(self, rng: random.Random, c: int, hw: int) -> None:
        super().__init__()
        self.sizes, self.back = (1, c, hw * hw), (1, c, hw, hw)
        self.c_out = c

    def forward(self, x):
        return torch.softmax(x.reshape(*self.sizes), dim=-1).reshape(*self.back) * x


class Pool(nn.Module):
    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.pool = rng.choice([nn.MaxPool2d(2), nn.AvgPool2d(2)])
        self.c_out = c

    def forward(self, x):
        return self.pool(x)


class ChannelsLast(nn.Module):
    """ConvNeXt-style: depthwise conv, permute to channels-last, LayerNorm, Linear MLP, permute back, residual."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        hidden = rng.choice([2, 4]) * c
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5) if rng.random() < 0.5 else None
        self.c_out = c

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + y.permute(0, 3, 1, 2)


class InPlace(nn.Module):
    """In-place arithmetic on a conv's output: ``mul_``, ``add_``, ``clamp_`` and a channel slice written in place."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.mode = rng.choice(["mul_add", "clamp", "slice_write"])
        self.c_out = c

    def forward(self, x):
        y = self.conv(x)
        if self.mode == "mul_add":
            y.mul_(0.5).add_(x)
        elif self.mode == "clamp":
            y.clamp_(min=-1.0, max=1.0)
        else:
            y[:, :1] = 0.0  # a write into the first channel: a fixed index along the channels
        return y


class SharedBranches(nn.Module):
    """One conv applied to two branches (a module called twice on different inputs), summed."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.shared = nn.Conv2d(c, c, 3, padding=1)
        self.pre = nn.Conv2d(c, c, 1)
        self.c_out = c

    def forward(self, x):
        return self.shared(x) + self.shared(F.relu(self.pre(x)))


class ViewMean(nn.Module):
    """``x.view(B, C, -1)`` from the tensor's own shape, a mean over the pixels, a gate per channel."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.c_out = c

    def forward(self, x):
        b, c = x.shape[:2]
        return x * torch.sigmoid(x.view(b, c, -1).mean(-1)).view(b, c, 1, 1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``(B, kv, L, d) -> (B, kv * n_rep, L, d)`` the way HF decoders repeat keys and values."""
    if n_rep == 1:
        return x
    b, kv, length, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, length, d).reshape(b, kv * n_rep, length, d)


class Attention(nn.Module):
    """Pre-norm attention over the H*W pixels as tokens, with a residual; optionally grouped-query."""

    def __init__(self, rng: random.Random, c: int) -> None:
        super().__init__()
        self.num_heads = rng.choice([2, 4])
        self.num_key_value_heads = rng.choice(_divisors(self.num_heads, (1, 2, 4)))
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.head_dim = rng.choice([2, 4])
        self.fused = self.num_key_value_heads == self.num_heads and rng.random() < 0.4
        inner, kv_inner = self.num_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        self.norm = nn.LayerNorm(c)
        if self.fused:
            self.qkv = nn.Linear(c, 3 * inner)
        else:
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(c, inner), nn.Linear(c, kv_inner), nn.Linear(c, kv_inner)
        self.o_proj = nn.Linear(inner, c)
        self.impl = rng.choice(["sdpa", "eager"])
        self.native_gqa = self.num_key_value_groups > 1 and rng.random() < 0.5  # SDPA's enable_gqa
        self.flat_out = rng.choice(["attrs", "minus_one"])
        self.c_out = c

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        n = self.norm(t)
        if self.fused:
            q, k, v = self.qkv(n).reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        else:
            q = self.q_proj(n).view(b, h * w, self.num_heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(n).view(b, h * w, self.num_key_value_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(n).view(b, h * w, self.num_key_value_heads, self.head_dim).transpose(1, 2)
            if not (self.native_gqa and self.impl == "sdpa"):
                k, v = repeat_kv(k, self.num_key_value_groups), repeat_kv(v, self.num_key_value_groups)
        if self.impl == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.native_gqa and not self.fused)
        else:
            o = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim ** -0.5, dim=-1) @ v
        width = self.num_heads * self.head_dim if self.flat_out == "attrs" else -1
        o = o.transpose(1, 2).reshape(b, h * w, width)
        t = t + self.o_proj(o)
        return t.transpose(1, 2).reshape(b, c, h, w)


class SecondInput(nn.Module):
    """Mix the model's second input into the map: ``x + Linear(z)`` per channel."""

    def __init__(self, rng: random.Random, c: int, z_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(z_dim, c)
        self.c_out = c

    def forward(self, x, z):
        return x + self.lin(z)[:, :, None, None]


CELLS = {"conv": ConvCell, "residual": Residual, "concat": DenseConcat, "split": Split, "se": SqueezeExcite,
         "tied": Tied, "twice": Twice, "buffer": Buffered, "literal_reshape": LiteralReshape, "pool": Pool,
         "attention": Attention, "channels_last": ChannelsLast, "inplace": InPlace, "shared": SharedBranches,
         "view_mean": ViewMean}


class Net(nn.Module):
    """The generated model: stem, cells, heads."""

    def __init__(self, rng: random.Random, n_cells: int, z_dim: int) -> None:
        super().__init__()
        c, hw = rng.choice([4, 6, 8]), IMAGE
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.cells, self.kinds = nn.ModuleList(), []
        self.z_dim, self.mix_at = z_dim, rng.randrange(n_cells) if z_dim else -1
        for i in range(n_cells):
            kind = rng.choice([k for k in CELLS if not (k == "pool" and hw <= 2) and not (k == "split" and c < 4)])
            cell = (LiteralReshape(rng, c, hw) if kind == "literal_reshape" else CELLS[kind](rng, c))
            self.cells.append(cell)
            self.kinds.append(kind)
            c, hw = cell.c_out, hw // 2 if kind == "pool" else hw
            if i == self.mix_at:
                self.mix = SecondInput(rng, c, z_dim)
        self.flatten_head = rng.random() < 0.4
        hidden = rng.choice([6, 8])
        if self.flatten_head:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * hw * hw, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        else:
            self.head = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        self.outputs = rng.choice(["one", "one", "tuple", "dict"])
        if self.outputs != "one":
            self.aux = nn.Linear(c, 2)

    def forward(self, x, z=None):
        x = self.stem(x)
        for i, cell in enumerate(self.cells):
            x = cell(x)
            if i == self.mix_at:
                x = self.mix(x, z)
        logits = self.head(x if self.flatten_head else x.mean((2, 3)))
        if self.outputs == "one":
            return logits
        aux = self.aux(x.amax((2, 3)))
        return (logits, aux) if self.outputs == "tuple" else {"logits": logits, "aux": aux}


@dataclass
class Generated:
    seed: int
    model: nn.Module
    inputs: Any
    kinds: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        extra = [f"{self.model.outputs} output", "flatten head" if self.model.flatten_head else "pooled head"]
        if self.model.z_dim:
            extra.append("two inputs")
        return f"seed {self.seed}: {' > '.join(self.kinds)} ({', '.join(extra)})"


def _randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """BN statistics and norm affines away from the identity, so the norms do something."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def build(seed: int, n_cells: tuple[int, int] = (2, 5)) -> Generated:
    """The model for ``seed``: same seed, same architecture and weights.

    Args:
        seed: the seed.
        n_cells: the least and most cells in the chain.

    Returns:
        A ``Generated`` with the model in eval mode and its example inputs (a tensor, or a tuple
        of the image and the second input).
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    z_dim = rng.choice([0, 0, 4])
    model = Net(rng, rng.randint(*n_cells), z_dim).eval()
    gen = torch.Generator().manual_seed(seed)
    _randomise_norms(model, gen)
    x = torch.randn(1, 3, IMAGE, IMAGE, generator=gen)
    inputs = (x, torch.randn(1, z_dim, generator=gen)) if z_dim else x
    with torch.no_grad():  # a generator bug shows here, before any prune is blamed for it
        model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    return Generated(seed, model, inputs, list(model.kinds))
