"""Built-in procedural textures and mattes, used when no --subjects / --backgrounds are given.

Textures carry detail at many scales so that focus is visible everywhere: octaves of value noise
mapped through a random palette, filled shapes, stripe gratings and rows of glyph-like marks.
Mattes are ellipses or star-shaped polygons with antialiased edges. Everything is drawn from a
``numpy.random.Generator``, so a texture is fixed by its seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw


def _noise_octaves(rng: np.random.Generator, h: int, w: int, channels: int) -> torch.Tensor:
    """Sum of value-noise octaves from 4 px cells up to the whole image; channels x h x w, ~N(0,1)."""
    out = torch.zeros((1, channels, h, w))
    total = 0.0
    cell = max(h, w) / 2.0
    amp = 1.0
    while cell >= 2.0:
        gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
        grid = torch.from_numpy(rng.standard_normal((1, channels, gh, gw)).astype(np.float32))
        out += amp * F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        total += amp * amp
        amp *= 0.7
        cell /= 2.0
    return (out / math.sqrt(total))[0]


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    base = rng.uniform(0.05, 0.95, size=(n, 3))
    return base.astype(np.float32)


def procedural_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W x 3 uint8 sRGB texture with fine detail at many scales."""
    h, w = int(height), int(width)
    pal = _palette(rng, 4)
    n = _noise_octaves(rng, h, w, 2)
    t0 = torch.sigmoid(2.0 * n[0])[..., None]
    t1 = torch.sigmoid(2.0 * n[1])[..., None]
    p = torch.from_numpy(pal)
    img = (1 - t0) * ((1 - t1) * p[0] + t1 * p[1]) + t0 * ((1 - t1) * p[2] + t1 * p[3])
    img = img.clamp(0, 1)

    # stripe gratings inside noise blobs
    yy = torch.arange(h, dtype=torch.float32)[:, None]
    xx = torch.arange(w, dtype=torch.float32)[None, :]
    for _ in range(int(rng.integers(1, 4))):
        theta = rng.uniform(0, math.pi)
        period = math.exp(rng.uniform(math.log(3.0), math.log(max(4.0, min(h, w) / 6.0))))
        phase = rng.uniform(0, 2 * math.pi)
        wave = 0.5 + 0.5 * torch.sin((xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period) + phase)
        blob = (_noise_octaves(rng, max(2, h // 8), max(2, w // 8), 1)[None] > rng.uniform(0.3, 1.0)).float()
        blob = F.interpolate(blob, size=(h, w), mode="bilinear", align_corners=False)[0, 0][..., None]
        colour = torch.from_numpy(rng.uniform(0, 1, 3).astype(np.float32))
        img = img * (1 - blob * wave[..., None] * 0.8) + blob * wave[..., None] * 0.8 * colour

    # shapes and glyph-like marks, drawn with PIL (deterministic rasteriser)
    arr = (img.numpy() * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(pil)
    size = max(h, w)
    for _ in range(int(rng.integers(8, 30))):
        r = size * math.exp(rng.uniform(math.log(0.005), math.log(0.15)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ar = rng.uniform(0.4, 2.5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = [cx - r * ar, cy - r / ar, cx + r * ar, cy + r / ar]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.ellipse(box, outline=colour, width=max(1, int(r * 0.15)))
    for _ in range(int(rng.integers(2, 8))):  # lines of "text"
        glyph = max(3.0, size * math.exp(rng.uniform(math.log(0.006), math.log(0.04))))
        x, y = rng.uniform(0, w * 0.8), rng.uniform(0, h)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        stroke = max(1, int(glyph * 0.12))
        for _ in range(int(rng.integers(5, 40))):
            if rng.uniform() < 0.15:
                x += glyph * 0.8  # a space
                continue
            for _ in range(int(rng.integers(1, 4))):
                x0, y0 = x + rng.uniform(0, glyph * 0.6), y + rng.uniform(0, glyph)
                x1, y1 = x + rng.uniform(0, glyph * 0.6), y + rng.uniform(0, glyph)
                draw.line([x0, y0, x1, y1], fill=colour, width=stroke)
            x += glyph * 0.75
    out = np.asarray(pil, dtype=np.float32) / 255.0
    # fine grain so that even flat regions show focus
    grain = rng.standard_normal((h, w, 1)).astype(np.float32) * 0.03
    return (np.clip(out + grain, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def procedural_alpha(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W uint8 matte: an ellipse or a star-shaped polygon, antialiased (drawn at 4x)."""
    ss = 4
    h, w = int(height) * ss, int(width) * ss
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    if rng.uniform() < 0.35:
        draw.ellipse([w * 0.02, h * 0.02, w * 0.98, h * 0.98], fill=255)
    else:
        k = int(rng.integers(5, 14))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radii = rng.uniform(0.45, 1.0, k)
        pts = [(w / 2 + 0.48 * w * r * math.cos(a), h / 2 + 0.48 * h * r * math.sin(a)) for a, r in zip(angles, radii)]
        draw.polygon(pts, fill=255)
    t = torch.from_numpy(np.asarray(img, dtype=np.float32))[None, None]
    t = F.avg_pool2d(t, ss)
    return (t[0, 0].numpy() + 0.5).astype(np.uint8)
