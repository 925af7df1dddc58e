"""Overlapping patches and their blend (VAEEDOF, Figure 3).

An image is covered by square patches of ``tile`` px whose origins step by ``stride``
(``tile * 3/4`` by default, i.e. a quarter overlap). The last patch of a row or column is moved
back to end at the image border, so every patch lies inside the image and no padding is needed
unless the image is smaller than one patch. Each patch gets a gradient alpha mask: a linear ramp
across the overlap on every side that has a neighbour, flat 1 elsewhere. The masks are then
divided by their sum over all patches, so the blend weights sum to exactly 1 at every pixel,
including borders and sizes that are not a multiple of the stride.

Functions take and return numpy arrays; ``blend_tiles`` streams: it holds one accumulator of
``(H, W, 3)`` float32 plus ``(H, W)`` weights, never all patches at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from focusstack.config import TileConfig

#: Patch sides are multiples of this (8 for the VAE, times 2**3 for the U-Net's three levels).
TILE_MULTIPLE = 64


@dataclass(frozen=True)
class Tile:
    """One patch: image rows ``y:y+h`` and columns ``x:x+w``; the network sees it padded to
    ``ph x pw`` (multiples of 64) when the image is smaller than a patch."""

    y: int
    x: int
    h: int
    w: int
    ph: int
    pw: int


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Origins along one axis: ``0, stride, 2*stride, ...`` with the last moved to ``length - tile``.

    Returns ``[0]`` when ``length <= tile``.
    """
    if length <= 0 or tile <= 0 or stride <= 0:
        raise ValueError(f"length, tile and stride must be positive, got {length}, {tile}, {stride}")
    if length <= tile:
        return [0]
    origins = list(range(0, length - tile, stride))
    origins.append(length - tile)
    return sorted(set(origins))


def plan_tiles(height: int, width: int, cfg: TileConfig = TileConfig()) -> list[Tile]:
    """Cover an ``height x width`` image with patches (row-major order)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    th, tw = min(cfg.tile, height), min(cfg.tile, width)
    ph, pw = (cfg.tile if height >= cfg.tile else _round_up(height, TILE_MULTIPLE),
              cfg.tile if width >= cfg.tile else _round_up(width, TILE_MULTIPLE))  # fmt: skip
    return [
        Tile(y, x, th, tw, ph, pw)
        for y in tile_origins(height, cfg.tile, cfg.stride)
        for x in tile_origins(width, cfg.tile, cfg.stride)
    ]


def ramp(n: int, overlap: int, start: bool, end: bool) -> np.ndarray:
    """1-D mask of length ``n``: linear ramp over ``overlap`` px at a side with a neighbour.

    Values lie in ``(0, 1]``: the ramp is ``(i + 0.5) / overlap`` so no pixel gets zero weight.
    """
    w = np.ones(n, dtype=np.float64)
    k = min(overlap, n)
    if k > 0:
        r = (np.arange(k, dtype=np.float64) + 0.5) / k
        if start:
            w[:k] = np.minimum(w[:k], r)
        if end:
            w[n - k :] = np.minimum(w[n - k :], r[::-1])
    return w


def tile_mask(tile: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """``(h, w)`` float64 gradient alpha mask of one patch (not yet normalised)."""
    wy = ramp(tile.h, overlap, tile.y > 0, tile.y + tile.h < height)
    wx = ramp(tile.w, overlap, tile.x > 0, tile.x + tile.w < width)
    return np.outer(wy, wx)


def weight_sum(tiles: Iterable[Tile], height: int, width: int, overlap: int) -> np.ndarray:
    """``(H, W)`` float64 sum of all patch masks (the normaliser)."""
    total = np.zeros((height, width), dtype=np.float64)
    for t in tiles:
        total[t.y : t.y + t.h, t.x : t.x + t.w] += tile_mask(t, height, width, overlap)
    return total


def blend_tiles(
    height: int,
    width: int,
    cfg: TileConfig,
    process: Callable[[Tile], np.ndarray],
    *,
    channels: int = 3,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``process`` on every patch and blend the results.

    ``process(tile)`` returns ``(tile.h, tile.w, channels)`` float32 (already cropped back from
    ``ph x pw``). Returns ``(height, width, channels)`` float32: the normalised blend.
    ``on_tile(done, total)`` reports progress.
    """
    tiles = plan_tiles(height, width, cfg)
    overlap = cfg.tile - cfg.stride
    norm = weight_sum(tiles, height, width, overlap)
    out = np.zeros((height, width, channels), dtype=np.float32)
    for i, t in enumerate(tiles):
        patch = process(t)
        if patch.shape != (t.h, t.w, channels):
            raise ValueError(f"process returned {patch.shape}, expected {(t.h, t.w, channels)}")
        m = tile_mask(t, height, width, overlap) / norm[t.y : t.y + t.h, t.x : t.x + t.w]
        out[t.y : t.y + t.h, t.x : t.x + t.w] += patch * m[..., None].astype(np.float32)
        if on_tile is not None:
            on_tile(i + 1, len(tiles))
    return out
