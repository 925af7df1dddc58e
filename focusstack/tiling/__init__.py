"""Overlapping patches and their blend (VAEEDOF, Figure 3), with two refinements.

The paper covers the image with 512 px patches that overlap by a quarter and blends them with a
gradient alpha mask. Here:

* **Plan.** The image is first extended on every side by ``margin`` px of mirrored context
  (virtually: patches read mirrored pixels, nothing is copied). Patch origins step by
  ``stride = tile * (1 - overlap)`` over that extended canvas; the last patch of a row or
  column is moved back to end at the canvas border, so every patch is full size. A canvas
  smaller than one patch is a single patch, padded (mirrored) to a multiple of 64 px.
* **Mask.** Each patch's alpha is a linear ramp across the overlap on every side with a
  neighbour, flat 1 elsewhere. The outer ``dead_zone`` fraction of the ramp is (almost) zero:
  the networks' zero padding distorts the outermost pixels of any patch, so those pixels should
  not show. Sides on the canvas border get no ramp (the margin absorbs their distortion).
* **Normalise.** The masks are divided by their sum, so blend weights sum to exactly 1 at every
  pixel, whatever the image size.

Why the margin: without it a flat-colour stack came back with 10/255 of ripple along the image
border; with 32 px, 2/255; with 96 px (the default), 0.6/255 (see tests/test_trained_fusion.py).

Two ways to use the plan: :func:`blend_tiles` runs a whole per-patch process and blends its
outputs (the general tool). The VAEEDOF engine instead plans patches over a *canvas*
(:func:`canvas_tiles`: the image plus its margin, rounded up to 64 px) and blends the outputs of
the networks' local stages with :func:`tile_weights`, at full and at 1/8 resolution
(:func:`downscale_weight`); see ``focusstack.engines.vaeedof``.

``blend_tiles`` streams: it holds one ``(H + 2m, W + 2m, C)`` float32 accumulator and the
normaliser, never all patches at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from focusstack.config import TileConfig

#: Patch sides are multiples of this (8 for the VAE, times 2**3 for the U-Net's three levels).
TILE_MULTIPLE = 64
#: Smallest weight inside a dead zone: keeps the normaliser positive in degenerate layouts.
DEAD_WEIGHT = 1e-4


@dataclass(frozen=True)
class Tile:
    """One patch in image coordinates (``y``/``x`` may be negative: mirrored context).

    The network sees rows ``y : y + ph`` and columns ``x : x + pw`` (mirrored outside the
    image); the blend uses the top-left ``h x w`` of its output.
    """

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
    """Cover an ``height x width`` image (plus its mirrored margin) with patches, row-major."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    m = cfg.margin
    ch, cw = height + 2 * m, width + 2 * m
    th, tw = min(cfg.tile, ch), min(cfg.tile, cw)
    ph = cfg.tile if ch >= cfg.tile else _round_up(ch, TILE_MULTIPLE)
    pw = cfg.tile if cw >= cfg.tile else _round_up(cw, TILE_MULTIPLE)
    return [
        Tile(y - m, x - m, th, tw, ph, pw)
        for y in tile_origins(ch, cfg.tile, cfg.stride)
        for x in tile_origins(cw, cfg.tile, cfg.stride)
    ]


def ramp(n: int, overlap: int, start: bool, end: bool, dead: int = 0) -> np.ndarray:
    """1-D mask of length ``n`` in ``(0, 1]``: zero-ish for ``dead`` px, then a linear ramp up to
    1 over the rest of ``overlap`` px, at each side flagged as having a neighbour."""
    w = np.ones(n, dtype=np.float64)
    k = min(overlap, n)
    if k > 0:
        d = min(dead, k - 1)
        r = np.clip((np.arange(k, dtype=np.float64) + 0.5 - d) / (k - d), DEAD_WEIGHT, 1.0)
        if start:
            w[:k] = np.minimum(w[:k], r)
        if end:
            w[n - k :] = np.minimum(w[n - k :], r[::-1])
    return w


def tile_mask(tile: Tile, height: int, width: int, cfg: TileConfig) -> np.ndarray:
    """``(h, w)`` float64 gradient alpha mask of one patch (not yet normalised)."""
    m = cfg.margin
    overlap = cfg.tile - cfg.stride
    dead = int(round(overlap * cfg.dead_zone))
    wy = ramp(tile.h, overlap, tile.y > -m, tile.y + tile.h < height + m, dead)
    wx = ramp(tile.w, overlap, tile.x > -m, tile.x + tile.w < width + m, dead)
    return np.outer(wy, wx)


def weight_sum(tiles: list[Tile], height: int, width: int, cfg: TileConfig) -> np.ndarray:
    """``(H + 2m, W + 2m)`` float64 sum of all patch masks over the canvas (the normaliser)."""
    m = cfg.margin
    total = np.zeros((height + 2 * m, width + 2 * m), dtype=np.float64)
    for t in tiles:
        total[t.y + m : t.y + m + t.h, t.x + m : t.x + m + t.w] += tile_mask(t, height, width, cfg)
    return total


def mirror_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer indices onto ``0..n-1`` by mirroring (``... 1 0 | 0 1 ... n-1 | n-1 ...``)."""
    j = np.mod(idx, 2 * n)
    return np.where(j >= n, 2 * n - 1 - j, j)


def extract(image: np.ndarray, tile: Tile) -> np.ndarray:
    """``(ph, pw, C)`` patch of an ``(H, W, C)`` image, mirrored where it leaves the image."""
    h, w = image.shape[:2]
    y0, x0 = tile.y, tile.x
    if y0 >= 0 and x0 >= 0 and y0 + tile.ph <= h and x0 + tile.pw <= w:
        return image[y0 : y0 + tile.ph, x0 : x0 + tile.pw]
    rows = mirror_index(np.arange(y0, y0 + tile.ph), h)
    cols = mirror_index(np.arange(x0, x0 + tile.pw), w)
    return image[rows[:, None], cols[None, :]]


def canvas_tiles(height: int, width: int, cfg: TileConfig = TileConfig()) -> tuple[int, int, list[Tile]]:
    """``(canvas_h, canvas_w, tiles)`` for an ``height x width`` image: the canvas is the image
    plus ``cfg.margin`` px of mirrored context on every side, rounded up to a multiple of 64 px
    (bottom and right, also mirrored); the tiles cover it in *canvas* coordinates (the canvas
    origin is image pixel ``(-margin, -margin)``). Used by the VAEEDOF engine."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    m = cfg.margin
    ch, cw = _round_up(height + 2 * m, TILE_MULTIPLE), _round_up(width + 2 * m, TILE_MULTIPLE)
    return ch, cw, plan_tiles(ch, cw, replace(cfg, margin=0))


def tile_weights(tiles: list[Tile], height: int, width: int, cfg: TileConfig) -> Iterator[np.ndarray]:
    """Each tile's normalised blend weight over an ``height x width`` canvas tiled with no margin
    (:func:`canvas_tiles`): ``(t.h, t.w)`` float32, summing to 1 at every canvas pixel."""
    c0 = replace(cfg, margin=0)
    norm = weight_sum(tiles, height, width, c0)
    for t in tiles:
        yield (tile_mask(t, height, width, c0) / norm[t.y : t.y + t.h, t.x : t.x + t.w]).astype(np.float32)


def downscale_weight(weight: np.ndarray, factor: int) -> np.ndarray:
    """``(h, w)`` -> ``(h / factor, w / factor)``: the mean of each block. Means of weights that
    sum to 1 at every pixel still sum to 1, so the result blends features at 1/factor scale."""
    h, w = weight.shape
    if h % factor or w % factor:
        raise ValueError(f"weight shape {weight.shape} is not a multiple of {factor}")
    return weight.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


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

    ``process(tile)`` returns ``(tile.h, tile.w, channels)`` float32 (already cropped from
    ``ph x pw``). Returns ``(height, width, channels)`` float32: the normalised blend, margin
    removed. ``on_tile(done, total)`` reports progress.
    """
    tiles = plan_tiles(height, width, cfg)
    m = cfg.margin
    norm = weight_sum(tiles, height, width, cfg)
    out = np.zeros((height + 2 * m, width + 2 * m, channels), dtype=np.float32)
    for i, t in enumerate(tiles):
        patch = process(t)
        if patch.shape != (t.h, t.w, channels):
            raise ValueError(f"process returned {patch.shape}, expected {(t.h, t.w, channels)}")
        ys, xs = slice(t.y + m, t.y + m + t.h), slice(t.x + m, t.x + m + t.w)
        weight = (tile_mask(t, height, width, cfg) / norm[ys, xs]).astype(np.float32)
        out[ys, xs] += patch * weight[..., None]
        if on_tile is not None:
            on_tile(i + 1, len(tiles))
    return out[m : m + height, m : m + width]
