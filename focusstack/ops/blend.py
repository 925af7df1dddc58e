"""Composition of frames by per-pixel weights."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def compose(frames: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``R_init = sum_k M_k f_k`` (Eq. 9 for ``K`` frames): ``K x (H, W, 3)`` float32 and
    ``(K, H, W)`` weights -> ``(H, W, 3)`` float32 in [0, 1]. Where a weight is exactly 1 (and
    the others 0) the output *is* that frame's float, copied; the weighted sum runs only over
    the pixels with soft weights."""
    if not isinstance(weights, np.ndarray) or weights.ndim != 3:
        raise ValueError(f"weights must be a (K, H, W) array, got shape {getattr(weights, 'shape', None)}")
    if len(frames) != weights.shape[0]:
        raise ValueError(f"{len(frames)} frames but {weights.shape[0]} weight maps")
    h, w = weights.shape[1:]
    for f in frames:
        if f.shape != (h, w, 3):
            raise ValueError(f"frames must be {(h, w, 3)}, got {f.shape}")
    out = np.zeros((h, w, 3), np.float32)
    soft = np.ones((h, w), bool)
    for f, m in zip(frames, weights):
        hard = m == 1.0
        if hard.any():
            cv2.copyTo(np.ascontiguousarray(f, np.float32), hard.view(np.uint8), out)  # SIMD masked copy
            soft &= ~hard
    if soft.any():
        idx = np.nonzero(soft)
        acc = np.zeros((idx[0].size, 3), np.float32)
        for f, m in zip(frames, weights):
            mk = m[idx]
            if mk.any():
                acc += f[idx] * mk[:, None]
        out[idx] = acc
    return np.clip(out, 0.0, 1.0, out=out)
