"""A TAESD-family tiny autoencoder that loads the TAEF2 (FLUX.2) weights with ``strict=True``.

Written from the facts in ``shared/weights/taef2/SOURCE.md`` and the state dict's keys and shapes:

* Encoder: ``conv3x3(3->64)``, a block, then three stages of ``conv3x3 stride 2 (no bias)`` + three
  blocks, then ``conv3x3(64->latent)``. Keys are flat sequential indices ``0 .. 14``.
* Decoder: soft clamp ``tanh(z/3)*3``, ``conv3x3(latent->64)``, ReLU, three blocks, then three
  stages of ``nearest x2`` + ``conv3x3 (no bias)`` + blocks (3, 3, 1), then ``conv3x3(64->3)``.
* Block: ``relu(conv(relu(conv(relu(conv(x))))) + x)``. FLUX.2 blocks at 1/8 resolution first add
  a branch to their input, ``x = x + b(x)`` with ``b = 1x1 conv 64->256 (no bias), GroupNorm(4),
  ReLU, 1x1 conv 256->64 (no bias)``. The branch is "pooled" through GroupNorm's statistics, which
  are taken over the whole image. We measured the alternatives on BSDS photos (global average
  before the branch: 24.6 dB; branch added after the convolutions: 28.1 dB; this form: 28.5 dB).
  Because of those image-wide statistics, encoding a patch is not the same as encoding the
  whole image and cutting the patch out.

Local and global parts. Only the 1/8-resolution blocks use image-wide statistics, and they sit
at the end of the encoder and the start of the decoder. So each side splits in two:

* ``encoder_local`` (full resolution down to 1/8, convolutions only: any pixel depends on its
  neighbourhood alone, so it can run patch by patch) and ``encoder_global`` (the pooled blocks
  and the last convolution, run on the whole image's 1/8-resolution features at once);
* ``decoder_global`` (clamp, first convolution, pooled blocks; whole image) and
  ``decoder_local`` (the upsampling stages; patch by patch).

The VAEEDOF engine uses this split so that a tiled result matches a one-piece result
(``focusstack.engines.vaeedof``).

Images are ``(B, 3, H, W)`` in [0, 1] with H and W multiples of 8; latents are
``(B, latent_channels, H/8, W/8)`` roughly in [-5, 5].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from focusstack.networks.config import ArchConfig


@dataclass(frozen=True)
class TAESDConfig(ArchConfig):
    """Architecture of a TAESD-family autoencoder (TAEF2 defaults)."""

    _kind = "TAESD"

    latent_channels: int = 32
    width: int = 64
    pooled_blocks: bool = True  # FLUX.2 variant: pooled branch in the 1/8-resolution blocks
    pool_hidden: int = 256
    pool_groups: int = 4


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp ``tanh(x / 3) * 3`` at the decoder input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block of three 3x3 convolutions; optional pooled (global context) branch."""

    def __init__(self, n: int, pooled: bool = False, hidden: int = 256, groups: int = 4) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n, n), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))
        self.fuse = nn.ReLU()
        self.pool = (
            nn.Sequential(
                nn.Conv2d(n, hidden, 1, bias=False),
                nn.GroupNorm(groups, hidden),
                nn.ReLU(),
                nn.Conv2d(hidden, n, 1, bias=False),
            )
            if pooled
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


class TAESDEncoder(nn.Sequential):
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, C_lat, H/8, W/8)``."""

    def __init__(self, cfg: TAESDConfig = TAESDConfig()) -> None:
        w, p = cfg.width, cfg.pooled_blocks

        def blk(pooled: bool = False) -> Block:
            return Block(w, pooled, cfg.pool_hidden, cfg.pool_groups)

        super().__init__(
            _conv(3, w), blk(),
            _conv(w, w, 2, bias=False), blk(), blk(), blk(),
            _conv(w, w, 2, bias=False), blk(), blk(), blk(),
            _conv(w, w, 2, bias=False), blk(p), blk(p), blk(p),
            _conv(w, cfg.latent_channels),
        )  # fmt: skip


class TAESDDecoder(nn.Sequential):
    """``(B, C_lat, h, w)`` -> ``(B, 3, 8h, 8w)``, approximately in [0, 1] (not clamped)."""

    def __init__(self, cfg: TAESDConfig = TAESDConfig()) -> None:
        w, p = cfg.width, cfg.pooled_blocks

        def blk(pooled: bool = False) -> Block:
            return Block(w, pooled, cfg.pool_hidden, cfg.pool_groups)

        def up() -> nn.Upsample:
            return nn.Upsample(scale_factor=2, mode="nearest")

        super().__init__(
            Clamp(), _conv(cfg.latent_channels, w), nn.ReLU(),
            blk(p), blk(p), blk(p), up(), _conv(w, w, bias=False),
            blk(), blk(), blk(), up(), _conv(w, w, bias=False),
            blk(), blk(), blk(), up(), _conv(w, w, bias=False),
            blk(), _conv(w, 3),
        )  # fmt: skip


#: Index of the first 1/8-resolution (pooled) block in the encoder and of the first upsampling
#: stage in the decoder: the boundaries between the local and the global parts.
ENCODER_SPLIT = 11
DECODER_SPLIT = 6


class TAESD(nn.Module):
    """Encoder plus decoder. ``encode``/``decode`` check shapes and state the contract.

    ``encoder_local``: ``(B, 3, H, W)`` in [0, 1] -> ``(B, width, H/8, W/8)`` features (local).
    ``encoder_global``: ``(B, width, h, w)`` -> ``(B, C_lat, h, w)`` latents (image-wide stats).
    ``decoder_global``: ``(B, C_lat, h, w)`` -> ``(B, width, h, w)`` features (image-wide stats).
    ``decoder_local``: ``(B, width, h, w)`` -> ``(B, 3, 8h, 8w)`` approximately in [0, 1] (local).
    They share their modules with ``encoder``/``decoder``.
    """

    downscale = 8

    def __init__(self, cfg: TAESDConfig = TAESDConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TAESDEncoder(cfg)
        self.decoder = TAESDDecoder(cfg)

    @property
    def encoder_local(self) -> nn.Sequential:
        return nn.Sequential(*list(self.encoder)[:ENCODER_SPLIT])

    @property
    def encoder_global(self) -> nn.Sequential:
        return nn.Sequential(*list(self.encoder)[ENCODER_SPLIT:])

    @property
    def decoder_global(self) -> nn.Sequential:
        return nn.Sequential(*list(self.decoder)[:DECODER_SPLIT])

    @property
    def decoder_local(self) -> nn.Sequential:
        return nn.Sequential(*list(self.decoder)[DECODER_SPLIT:])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float in [0, 1], H and W multiples of 8 -> ``(B, C_lat, H/8, W/8)``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[2] % 8 or images.shape[3] % 8:
            raise ValueError(f"encode expects H and W multiples of 8, got {tuple(images.shape[2:])}")
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, C_lat, h, w)`` -> ``(B, 3, 8h, 8w)`` clamped to [0, 1]."""
        if latents.ndim != 4 or latents.shape[1] != self.cfg.latent_channels:
            raise ValueError(
                f"decode expects (B, {self.cfg.latent_channels}, h, w), got {tuple(latents.shape)}"
            )
        return self.decoder(latents).clamp(0, 1)
