"""The Fusion U-Net of VAEEDOF (section 3): 7 concatenated latents in, one fused latent out.

Architecture (hyperparameters in :class:`FusionUNetConfig`, saved as ``config.json`` beside the
weights):

* ``conv_in``: 3x3, ``frames * latent_channels -> channels[0]``.
* Three down levels: a residual block, then a stride-2 convolution (the paper's three
  downsampling blocks).
* Middle: residual block, multi-head self-attention, residual block (the paper's attention).
* Three up levels: nearest x2 + 3x3 convolution, concatenation with the skip, residual block.
* Head: GroupNorm, SiLU, 3x3 convolution.

``head`` chooses what the last convolution predicts:

* ``"latent"``: the fused latent directly (the paper).
* ``"select_residual"`` (default): one logit per frame and a residual latent. The output is
  ``sum_k softmax(logits)_k * z_k + residual``. The head starts at zero, so an untrained network
  returns the mean of the latents, and training learns where each frame is sharp (a soft decision
  map in latent space) plus what no frame shows. It converges much faster than ``"latent"`` on a
  CPU budget and keeps each frame's latent unchanged where that frame wins.

Input ``(B, frames * C, h, w)`` or ``(B, frames, C, h, w)``; h and w multiples of 8
(``2 ** 3`` for the three down levels). Output ``(B, C, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from focusstack.networks.config import ArchConfig

HEADS = ("latent", "select_residual")


@dataclass(frozen=True)
class FusionUNetConfig(ArchConfig):
    """Architecture only: nothing about training or run time."""

    _kind = "Fusion U-Net"

    frames: int = 7
    latent_channels: int = 32
    channels: tuple[int, int, int] = (64, 128, 192)
    attention_heads: int = 4
    groups: int = 32
    head: str = "select_residual"

    def __post_init__(self) -> None:
        if len(self.channels) != 3:
            raise ValueError(f"channels must have 3 entries (3 levels), got {self.channels}")
        for c in self.channels:
            if c % self.groups:
                raise ValueError(f"every channel count must divide by groups={self.groups}, got {c}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.channels[-1] % self.attention_heads:
            raise ValueError("channels[-1] must divide by attention_heads")


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the spatial positions, pre-norm, residual."""

    def __init__(self, c: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class FusionUNet(nn.Module):
    """Fuses ``frames`` latents into one. See the module docstring for the architecture."""

    def __init__(self, cfg: FusionUNetConfig = FusionUNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        g = cfg.groups
        self.conv_in = nn.Conv2d(cfg.frames * cfg.latent_channels, c0, 3, padding=1)
        self.down_blocks = nn.ModuleList([ResBlock(c0, c0, g), ResBlock(c0, c1, g), ResBlock(c1, c2, g)])
        self.downsamples = nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1) for c in (c0, c1, c2)])
        self.mid1 = ResBlock(c2, c2, g)
        self.attn = Attention(c2, cfg.attention_heads, g)
        self.mid2 = ResBlock(c2, c2, g)
        self.upsamples = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for c in (c2, c2, c1)])
        self.up_blocks = nn.ModuleList([ResBlock(c2 + c2, c2, g), ResBlock(c2 + c1, c1, g), ResBlock(c1 + c0, c0, g)])
        out_ch = cfg.latent_channels + (cfg.frames if cfg.head == "select_residual" else 0)
        self.norm_out = nn.GroupNorm(g, c0)
        self.conv_out = nn.Conv2d(c0, out_ch, 3, padding=1)
        if cfg.head == "select_residual":
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, frames, C, h, w)`` or ``(B, frames*C, h, w)`` -> ``(B, C, h, w)``, same dtype."""
        cfg = self.cfg
        if latents.ndim == 4:
            if latents.shape[1] != cfg.frames * cfg.latent_channels:
                raise ValueError(
                    f"FusionUNet expects {cfg.frames}x{cfg.latent_channels} channels, got {latents.shape[1]}"
                )
            b, _, h, w = latents.shape
            stacked = latents.reshape(b, cfg.frames, cfg.latent_channels, h, w)
        elif latents.ndim == 5:
            if tuple(latents.shape[1:3]) != (cfg.frames, cfg.latent_channels):
                raise ValueError(
                    f"FusionUNet expects (B, {cfg.frames}, {cfg.latent_channels}, h, w), got {tuple(latents.shape)}"
                )
            stacked = latents
            b, _, _, h, w = latents.shape
        else:
            raise ValueError(f"FusionUNet expects a 4-D or 5-D tensor, got {latents.ndim}-D")
        if h % 8 or w % 8:
            raise ValueError(f"latent height and width must be multiples of 8, got {h}x{w}")

        x = self.conv_in(stacked.reshape(b, -1, h, w))
        skips = []
        for block, down in zip(self.down_blocks, self.downsamples):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.mid2(self.attn(self.mid1(x)))
        for up, block in zip(self.upsamples, self.up_blocks):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = block(torch.cat([x, skips.pop()], dim=1))
        out = self.conv_out(F.silu(self.norm_out(x)))
        if cfg.head == "latent":
            return out
        logits, residual = out[:, : cfg.frames], out[:, cfg.frames :]
        weights = torch.softmax(logits.float(), dim=1).to(stacked.dtype)
        return (weights.unsqueeze(2) * stacked).sum(dim=1) + residual


def expand_frames(latents: torch.Tensor, frames: int) -> torch.Tensor:
    """Duplicate ``(B, K, C, h, w)`` latents up to ``frames`` (VAEEDOF: fewer than 7 are duplicated).

    Frames are repeated cyclically (1,2,3 -> 1,2,3,1,2,3,1), so every frame appears at least
    ``frames // K`` times. K must be between 1 and ``frames``.
    """
    k = latents.shape[1]
    if not 1 <= k <= frames:
        raise ValueError(f"expected 1 to {frames} frames, got {k}")
    idx = torch.arange(frames, device=latents.device) % k
    return latents[:, idx]
