"""Occluder cut-outs: foregrounds that cross the whole frame, for the FSB's training renders.

Matted subjects (animals, people) are compact shapes inside the frame. Real near/far pairs are
often different: the near-focus region is a shelf that fills two thirds of the view, railing
bars that run from the top edge to the bottom one, a wall edge. A segmentation network that
has only seen compact subjects marks a textureless part of such a region as background. This
module writes RGBA cut-outs for ``render-dataset --subjects`` whose mattes are:

* ``edge``: a half-plane with a straight or wavy boundary;
* ``bars``: one to three straight bars crossing the cut-out (railings, posts, stems);
* ``blob``: the union of a few large ellipses (rocks, foliage, furniture).

Textures are crops of the background photos (a photo's split decides the occluder's split, so
validation occluders never carry a training photo) or, for a share of them, a flat colour with
shading and grain (the textureless case). Render them with a subject scale of about 1-2 so that
they reach past the frame's edges, e.g.::

    focusstack render-dataset OUT --subjects OCCLUDERS --backgrounds BG --frames-min 2 \\
        --frames-max 2 --subject-scale-min 1.0 --subject-scale-max 2.0

All arrays: textures ``(S, S, 3)`` float32 in [0, 1], mattes ``(S, S)`` float32 in [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from focusstack.errors import UsageError
from focusstack.rendering.sources import Source, discover_backgrounds, load_rgb, split_sources

#: The matte kinds, drawn with these probabilities.
KINDS = {"edge": 0.4, "bars": 0.3, "blob": 0.3}
#: Share of occluders with a flat (textureless) colour instead of a photo crop.
FLAT_SHARE = 0.3


def _antialias(draw, size: int, ss: int = 4) -> np.ndarray:  # noqa: ANN001
    """Call ``draw(canvas, ss)`` on a ``size*ss`` uint8 canvas, return the area-downsampled matte."""
    big = np.zeros((size * ss, size * ss), np.uint8)
    draw(big, ss)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def edge_matte(rng: np.random.Generator, size: int) -> np.ndarray:
    """A half-plane through a point near the centre; the boundary is straight or wavy."""
    n = size * 2  # 2x supersampling: the boundary is smooth, unlike the thin bars below
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    nx, ny = np.cos(theta), np.sin(theta)
    d = xx * nx + yy * ny - rng.uniform(-0.2, 0.2)
    t = -xx * ny + yy * nx  # position along the boundary
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 4))):
            d = d + rng.uniform(0.005, 0.05) * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t + rng.uniform(0, 2 * np.pi))
    big = (d > 0).astype(np.float32)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def bars_matte(rng: np.random.Generator, size: int) -> np.ndarray:
    """One to three straight bars across the cut-out, mostly near vertical or horizontal."""

    def draw(c: np.ndarray, ss: int) -> None:
        n = c.shape[0]
        base = 0.0 if rng.random() < 0.6 else np.pi / 2
        for _ in range(int(rng.integers(1, 4))):
            ang = base + np.deg2rad(rng.uniform(-20, 20))
            w = rng.uniform(0.05, 0.25) * n
            off = rng.uniform(-0.45, 0.45) * n
            dx, dy = np.sin(ang), np.cos(ang)  # along the bar
            cx, cy = n / 2 + off * dy, n / 2 - off * dx
            hw = w / 2
            taper = rng.uniform(0.7, 1.3)  # bars seen at an angle narrow towards one end
            pts = np.array([
                [cx - dx * n - dy * hw, cy - dy * n + dx * hw],
                [cx - dx * n + dy * hw, cy - dy * n - dx * hw],
                [cx + dx * n + dy * hw * taper, cy + dy * n - dx * hw * taper],
                [cx + dx * n - dy * hw * taper, cy + dy * n + dx * hw * taper],
            ])
            cv2.fillPoly(c, [np.round(pts).astype(np.int32)], 255)

    return _antialias(draw, size)


def blob_matte(rng: np.random.Generator, size: int) -> np.ndarray:
    """The union of 2-6 large ellipses, some reaching the cut-out's edges."""

    def draw(c: np.ndarray, ss: int) -> None:
        n = c.shape[0]
        for _ in range(int(rng.integers(2, 7))):
            centre = (int(rng.uniform(0.1, 0.9) * n), int(rng.uniform(0.1, 0.9) * n))
            axes = (int(rng.uniform(0.12, 0.45) * n), int(rng.uniform(0.12, 0.45) * n))
            cv2.ellipse(c, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)

    return _antialias(draw, size)


MATTES = {"edge": edge_matte, "bars": bars_matte, "blob": blob_matte}


def flat_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat colour with a smooth shading gradient and fine grain: ``(S, S, 3)`` in [0, 1]."""
    colour = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    a = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0, 0.5) * (xx * np.cos(a) + yy * np.sin(a))
    img = colour[None, None] * shade[..., None] + rng.normal(0, 0.01, (size, size, 3)).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def photo_texture(rng: np.random.Generator, photo: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of ``photo`` (``(H, W, 3)`` in [0, 1]) resized to ``size``."""
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(h, w))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(crop, (size, size), interpolation=interp), 0, 1).astype(np.float32)


def _matted_items(out: Path, backgrounds: Path, count: int, size: int, seed: int, val_fraction: float, stem: str, what: str):  # noqa: ANN202
    """The set-up shared by :func:`make_occluders` and :func:`make_mixed_backgrounds`: checks the
    arguments, refuses an ``out`` that already holds ``stem_*.png``, creates it, and yields per
    item ``(file name, split, rng, matte kind, (S, S) matte, photo pool of that split)``. The
    items' own split is ``render-dataset``'s rule on their file names, so a val item only ever
    draws from the val photos of ``backgrounds``; one seeded ``rng`` serves all draws."""
    if count < 2 or size < 32:
        raise UsageError(f"too few or too small {what}", expected="count >= 2 and size >= 32", actual=f"count {count}, size {size}")
    out = Path(out)
    if out.is_dir() and any(out.glob(f"{stem}_*.png")):
        raise UsageError(f"{out} already holds {what}", expected="a new or empty folder", actual=str(out), fix="choose another folder")
    bg_train, bg_val = split_sources(discover_backgrounds(Path(backgrounds)), val_fraction, "--backgrounds")
    names = [f"{stem}_{i:04d}.png" for i in range(count)]
    _, own_val = split_sources([Source(n, n, None, "cutout") for n in names], val_fraction, what)
    val_names = {s.id for s in own_val}
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds, probs = list(KINDS), np.array(list(KINDS.values()))
    for name in names:
        kind = str(rng.choice(kinds, p=probs / probs.sum()))
        matte = MATTES[kind](rng, size)
        split = "val" if name in val_names else "train"
        yield name, split, rng, kind, matte, bg_val if split == "val" and bg_val else bg_train


def make_occluders(out: Path, backgrounds: Path, count: int, size: int = 768, seed: int = 0, val_fraction: float = 0.1) -> dict:
    """Write ``count`` RGBA cut-outs ``occluder_NNNN.png`` (``size`` px square) into ``out`` and
    an ``occluders.json`` record; return that record.

    The occluders' own train/val split (by ``render-dataset``'s rule, the SHA-256 of the file
    name) decides which split of ``backgrounds`` a photo texture comes from. Refuses an ``out``
    that already holds occluders (choose a new folder)."""
    from PIL import Image

    records, out = [], Path(out)
    for name, split, rng, kind, matte, pool in _matted_items(out, backgrounds, count, size, seed, val_fraction, "occluder", "occluders"):
        if rng.random() < FLAT_SHARE:
            tex, texture = flat_texture(rng, size), "flat"
        else:
            src = pool[int(rng.integers(len(pool)))]
            tex, texture = photo_texture(rng, load_rgb(src.path).astype(np.float32) / 255.0, size), src.id
        rgba = np.dstack([tex, matte])
        Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").save(out / name, compress_level=1)
        records.append({"file": name, "matte": kind, "texture": texture, "split": split,
                        "coverage": round(float(matte.mean()), 3)})
    record = {"count": count, "size": size, "seed": seed, "backgrounds": str(backgrounds), "occluders": records}
    (out / "occluders.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def make_mixed_backgrounds(out: Path, backgrounds: Path, count: int, size: int = 768, seed: int = 0, val_fraction: float = 0.1) -> dict:
    """Write ``count`` background photos ``mixed_NNNN.png`` (``size`` px square) into ``out``
    whose part under an ``edge``/``bars``/``blob`` matte is a flat, textureless colour
    (:func:`flat_texture`: a wall, a ceiling, a dark stairwell), and a ``mixed.json`` record.

    Why: with flat occluders over fully textured photos, every textureless region a network
    sees is foreground, and it learns that prior (a real pair's dark, textureless background
    between railing bars then comes out as foreground). With these as ``--backgrounds``,
    textureless regions are background too, so only the focus evidence at their borders can
    tell. Splits as in :func:`make_occluders`: a mixed image's own train/val split (by its file
    name) decides which split of ``backgrounds`` its photo comes from; pass the same
    ``val_fraction`` to ``render-dataset``. Refuses an ``out`` that already holds them."""
    from PIL import Image

    records, out = [], Path(out)
    for name, split, rng, kind, matte, pool in _matted_items(out, backgrounds, count, size, seed, val_fraction, "mixed", "mixed backgrounds"):
        matte = matte[..., None]
        src = pool[int(rng.integers(len(pool)))]
        photo = photo_texture(rng, load_rgb(src.path).astype(np.float32) / 255.0, size)
        img = photo * (1 - matte) + flat_texture(rng, size) * matte
        Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB").save(out / name, compress_level=1)
        records.append({"file": name, "flat": kind, "photo": src.id, "split": split,
                        "flat_share": round(float(matte.mean()), 3)})
    record = {"count": count, "size": size, "seed": seed, "backgrounds": str(backgrounds), "mixed": records}
    (out / "mixed.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
