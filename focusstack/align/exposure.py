"""Exposure and white-balance matching: one gain per colour channel, against the reference.

Defocus moves light around but keeps local means, so both images are reduced to a small,
strongly blurred thumbnail before they are compared; the gain of a channel is the median
ratio of the two thumbnails over the pixels that are neither near black nor near clipping in
either image (a median, so moving subjects and specular highlights do not pull it). Gains
within ``tolerance`` of 1 are not applied at all, so frames that already match stay bit-exact.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["GainReference", "apply_gains", "estimate_gains"]

#: Longer side of the comparison thumbnail (px) and its blur (fraction of that side).
THUMB_SIDE = 256
THUMB_BLUR = 0.015
LOW, HIGH = 0.02, 0.96


def _thumbnail(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` float32 in [0, 1] -> (blurred thumbnail ``(h, w, 3)`` float32, usable mask
    ``(h, w, 3)`` bool: no clipped or black pixel nearby)."""
    h, w = image.shape[:2]
    s = min(1.0, THUMB_SIDE / max(h, w))
    size = (max(8, round(w * s)), max(8, round(h * s)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    hi = cv2.dilate(small, np.ones((5, 5), np.uint8))
    lo = cv2.erode(small, np.ones((5, 5), np.uint8))
    usable = (hi < HIGH) & (lo > LOW)
    sigma = max(1.0, THUMB_BLUR * max(size))
    blurred = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred, usable


class GainReference:
    """The reference frame's thumbnail, kept while the other frames are matched to it."""

    def __init__(self, reference: np.ndarray) -> None:
        """``reference``: ``(H, W, 3)`` float32 in [0, 1], already in the output geometry."""
        self.shape = reference.shape
        self.thumb, self.usable = _thumbnail(reference)


def estimate_gains(ref: GainReference, frame: np.ndarray, *, min_fraction: float = 0.05) -> np.ndarray:
    """Per-channel gains ``(3,)`` float64 that bring ``frame`` to the reference's exposure.

    Args:
        ref: the reference thumbnail (:class:`GainReference`).
        frame: ``(H, W, 3)`` float32 in [0, 1] in the same geometry as the reference.
        min_fraction: fewest usable thumbnail pixels (fraction) for a channel to be measured;
            a channel with fewer keeps gain 1.

    Returns:
        ``(3,)`` gains, clipped to [0.25, 4]; multiply the frame by them.
    """
    if frame.shape != ref.shape:
        raise ValueError(f"frame {frame.shape} and reference {ref.shape} must share one shape")
    thumb, usable = _thumbnail(frame)
    ok = usable & ref.usable
    gains = np.ones(3)
    for c in range(3):
        m = ok[..., c]
        if m.mean() < min_fraction:
            continue
        ratio = np.log(ref.thumb[..., c][m].astype(np.float64)) - np.log(thumb[..., c][m].astype(np.float64))
        gains[c] = float(np.exp(np.median(ratio)))
    return np.clip(gains, 0.25, 4.0)


def apply_gains(frame: np.ndarray, gains: np.ndarray, tolerance: float = 0.002) -> bool:
    """Multiply ``frame`` (``(H, W, 3)`` float32 in [0, 1], in place) by ``gains`` and clip to
    [0, 1]. Does nothing (and returns False) when every gain is within ``tolerance`` of 1."""
    g = np.asarray(gains, np.float64)
    if np.all(np.abs(g - 1.0) < tolerance):
        return False
    frame *= g.astype(np.float32)
    np.clip(frame, 0.0, 1.0, out=frame)
    return True
