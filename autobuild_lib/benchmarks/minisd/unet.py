"""A small pixel-space inpainting U-Net with SD v1.4's topology (paper Sec. 5.3, 7.8).

One :class:`~autobuild_lib.core.spaces.sd.SDArch` of the SD spaces becomes one
:class:`MiniUNet`.  The topology is SD v1.4's (notes Sec. 7), shrunk for a CPU:

* ``conv_in`` (3 -> stage-1 channels) on the conditioning input
  ``[x_t, mask, masked image]`` (SD's inpainting U-Net also takes the noisy
  sample, the mask and the masked image, concatenated);
* input stage s: its ResConv blocks (each followed by an Attention block if the
  arch says so), then a Downsample (stride-2 conv) for s = 1-3;
* middle stage: ResConv, Attention, ResConv at stage-4 channels;
* output stage s (forward order 4 -> 1): its first ResConv takes the deeper
  features *and* the long skip from input stage s, then the rest of its
  ResConv(+Attention) blocks, then an Upsample (nearest x2 + conv) for s = 2-4;
* ``conv_out`` -> the predicted noise (1 channel).

Channels are the arch's paper channels divided by ``divisor`` (default 8:
C_m in {128, 192, 256} -> {16, 24, 32}, ratios kept).  Every ResConv adds a
projection of the timestep embedding (sinusoidal, then a 2-layer MLP of width
4 C_m as in SD).

Weight inheritance (:func:`inherit`): parameter names do not depend on which
blocks an arch drops (``inputs.2.res.0`` is the first ResConv of input stage 3
in every arch), so a variant takes, for each of its parameters, the leading
slice of the base model's parameter of the same name (channel slicing); a
dropped block simply has no counterpart.  Where a variant has more channels
than the base (multipliers such as [1, 3, 4, 2] exceed [1, 2, 3, 4] in a
stage), the extra channels keep their seeded fresh initialisation.  The
first ResConv of an output stage normalises and convolves its two inputs
with separate weights (``conv(cat(a, b)) = conv_a(a) + conv_b(b)``) so that
slicing stays aligned with the concatenation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from autobuild_lib.core.spaces.sd import N_STAGES, SDArch

__all__ = ["MiniUNet", "inherit", "DIVISOR", "GROUPS"]

DIVISOR = 8
GROUPS = 4


def _norm(channels: int) -> nn.GroupNorm:
    if channels % GROUPS:
        raise ValueError(f"{channels} channels are not divisible by the {GROUPS} GroupNorm groups")
    return nn.GroupNorm(GROUPS, channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (shape [B]) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResConv(nn.Module):
    """SD's ResBlock: GN-SiLU-conv, + timestep projection, GN-SiLU-conv, residual.

    With ``skip_channels`` > 0 the block takes a second input (the long skip)
    that is normalised and convolved with its own weights.
    """

    def __init__(self, in_ch: int, out_ch: int, temb: int, skip_channels: int = 0) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb, out_ch)
        self.norm2 = _norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch or skip_channels else nn.Identity()
        if skip_channels:
            self.norm1_skip = _norm(skip_channels)
            self.conv1_skip = nn.Conv2d(skip_channels, out_ch, 3, padding=1, bias=False)
            self.shortcut_skip = nn.Conv2d(skip_channels, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        res = self.shortcut(x)
        if skip is not None:
            h = h + self.conv1_skip(F.silu(self.norm1_skip(skip)))
            res = res + self.shortcut_skip(skip)
        h = h + self.temb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return res + h


class Attention(nn.Module):
    """Single-head spatial self-attention with GroupNorm and a residual (SD's attention, no text)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hgt * wid).transpose(2, 3).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(h.transpose(1, 2).reshape(b, c, hgt, wid))


class Stage(nn.Module):
    """ResConv blocks, each optionally followed by an Attention (names independent of what is dropped)."""

    def __init__(self, in_ch: int, ch: int, temb: int, blocks: tuple[bool, ...], skip_channels: int = 0) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            ResConv(in_ch if j == 0 else ch, ch, temb, skip_channels if j == 0 else 0) for j in range(len(blocks))
        )
        self.attn = nn.ModuleDict({str(j): Attention(ch) for j, a in enumerate(blocks) if a})

    def forward(self, x: torch.Tensor, emb: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        for j, block in enumerate(self.res):
            x = block(x, emb, skip if j == 0 else None)
            if str(j) in self.attn:
                x = self.attn[str(j)](x)
        return x


class MiniUNet(nn.Module):
    """The inpainting noise predictor of one SD-space architecture.

    ``forward(x_t, t, mask, masked)`` -> predicted noise, all images [B, 1, H, W]
    with H, W divisible by 8; ``mask`` is 1 on the pixels to inpaint.
    """

    def __init__(self, arch: SDArch, divisor: int = DIVISOR) -> None:
        super().__init__()
        self.arch = arch
        if any(c % divisor for c in arch.channels) or arch.c_m % divisor:
            raise ValueError(f"channels {arch.channels} are not divisible by {divisor}")
        ch = [c // divisor for c in arch.channels]
        temb = 4 * (arch.c_m // divisor)
        self.temb_dim = arch.c_m // divisor
        self.time_mlp = nn.Sequential(nn.Linear(self.temb_dim, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.inputs = nn.ModuleList()
        self.down = nn.ModuleList()
        prev = ch[0]
        for s in range(N_STAGES):
            self.inputs.append(Stage(prev, ch[s], temb, arch.inputs[s]))
            prev = ch[s]
            if s < N_STAGES - 1:
                self.down.append(nn.Conv2d(ch[s], ch[s], 3, stride=2, padding=1))
        self.middle = nn.ModuleDict({
            "res1": ResConv(ch[-1], ch[-1], temb),
            "attn": Attention(ch[-1]),
            "res2": ResConv(ch[-1], ch[-1], temb),
        })
        # outputs[s] is output stage s+1; it runs after the deeper stage s+2 (or the middle).
        self.outputs = nn.ModuleList()
        self.up = nn.ModuleList()
        for s in range(N_STAGES):
            deeper = ch[s + 1] if s < N_STAGES - 1 else ch[-1]
            self.outputs.append(Stage(deeper, ch[s], temb, arch.outputs[s], skip_channels=ch[s]))
            if s > 0:
                self.up.append(nn.Conv2d(ch[s], ch[s], 3, padding=1))
        self.norm_out = _norm(ch[0])
        self.conv_out = nn.Conv2d(ch[0], 1, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.temb_dim))
        h = self.conv_in(torch.cat([x_t, mask, masked], dim=1))
        skips = []
        for s in range(N_STAGES):
            h = self.inputs[s](h, emb)
            skips.append(h)
            if s < N_STAGES - 1:
                h = self.down[s](h)
        h = self.middle["res2"](self.middle["attn"](self.middle["res1"](h, emb)), emb)
        for s in reversed(range(N_STAGES)):
            h = self.outputs[s](h, emb, skips[s])
            if s > 0:
                h = self.up[s - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


@torch.no_grad()
def inherit(variant: MiniUNet, base: MiniUNet) -> dict[str, int]:
    """Copy into ``variant`` the leading slice of every same-named ``base`` parameter.

    Returns counts: ``copied`` (values taken from the base), ``fresh`` (values
    kept from the variant's own initialisation: extra channels, or a parameter
    the base lacks).
    """
    base_state = base.state_dict()
    copied = fresh = 0
    for name, p in variant.state_dict().items():
        src = base_state.get(name)
        if src is None or src.dim() != p.dim():
            fresh += p.numel()
            continue
        idx = tuple(slice(0, min(a, b)) for a, b in zip(p.shape, src.shape))
        p[idx] = src[idx]
        n = math.prod(s.stop for s in idx)
        copied += n
        fresh += p.numel() - n
    return {"copied": copied, "fresh": fresh}
