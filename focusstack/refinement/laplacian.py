"""A Laplacian-pyramid fusion baseline (Burt and Adelson 1983 style), for benchmarking
``refine-tr --init`` on a reconstruction-type fusion.

Each frame is decomposed into a Laplacian pyramid; at every level the coefficient with the
largest local energy (3x3 box of squared coefficients, on the luminance-weighted sum of the
channels' magnitudes) is taken; the base level is averaged. This is the classical
"choose-max" rule; it blends frames near boundaries, so its transition regions mix the near
frame's blurred background and the far frame's diffused foreground.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    g = [img]
    for _ in range(levels):
        g.append(cv2.pyrDown(g[-1]))
    lap = []
    for i in range(levels):
        up = cv2.pyrUp(g[i + 1], dstsize=(g[i].shape[1], g[i].shape[0]))
        lap.append(g[i] - up)
    lap.append(g[-1])
    return lap


def laplacian_fuse(frames: Sequence[np.ndarray], levels: int = 5) -> np.ndarray:
    """``K x (H, W, 3)`` float32 in [0, 1] -> ``(H, W, 3)`` float32 in [0, 1]."""
    if len(frames) < 1:
        raise ValueError("laplacian_fuse needs at least one frame")
    frames = [np.asarray(f, np.float32) for f in frames]
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3 or any(f.shape != shape for f in frames):
        raise ValueError(f"frames must share one (H, W, 3) shape, got {[f.shape for f in frames]}")
    levels = max(1, min(levels, int(np.log2(max(2, min(shape[:2])))) - 2))
    pyrs = [_pyramid(f, levels) for f in frames]
    out_pyr = []
    for lv in range(levels):
        coeffs = np.stack([p[lv] for p in pyrs])  # (K, h, w, 3)
        energy = np.stack([cv2.boxFilter(np.abs(c).sum(axis=2) ** 2, -1, (3, 3)) for c in coeffs])
        pick = energy.argmax(axis=0)
        out_pyr.append(np.take_along_axis(coeffs, pick[None, ..., None].repeat(3, axis=-1), axis=0)[0])
    out_pyr.append(np.mean([p[-1] for p in pyrs], axis=0))
    img = out_pyr[-1]
    for lv in range(levels - 1, -1, -1):
        img = cv2.pyrUp(img, dstsize=(out_pyr[lv].shape[1], out_pyr[lv].shape[0])) + out_pyr[lv]
    return np.clip(img, 0.0, 1.0).astype(np.float32)
