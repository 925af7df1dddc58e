"""Warp frames into the reference frame's geometry and find the area that every frame covers.

Frames stay ``(H, W, 3) float32 in [0, 1]`` throughout: warping is done in float32 with Lanczos
interpolation and clipped back to [0, 1], so 16-bit input keeps its precision. A frame whose
transform to the output is the identity up to the crop offset (the reference, every frame with
``--no-align``, or a transform snapped to the identity) is *sliced*, never resampled, so its
pixels reach the engine bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from focusstack.align.registration import corner_shift, transform_corners
from focusstack.errors import StackError

__all__ = ["Crop", "common_area", "full_area", "is_identity", "warp_frame"]


@dataclass(frozen=True)
class Crop:
    """An axis-aligned box in reference pixels: columns ``x0:x1``, rows ``y0:y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def to_dict(self) -> dict:
        return {"x": self.x0, "y": self.y0, "width": self.width, "height": self.height}


def full_area(width: int, height: int) -> Crop:
    return Crop(0, 0, width, height)


def is_identity(t: np.ndarray, width: int, height: int, tol: float = 1e-3) -> bool:
    """True when ``t`` moves no image corner by ``tol`` px or more."""
    return corner_shift(t, width, height) < tol


def common_area(transforms: Sequence[np.ndarray], width: int, height: int, *, names: Sequence[str] = ()) -> Crop:
    """The largest axis-aligned box (reference pixels) that every warped frame covers.

    Each frame's outline, mapped by its ``T_ref<-k`` (``(3, 3)``), is a convex quadrilateral
    close to the image rectangle; the box is bounded by the innermost corner on each side
    (exact for such near-axis-aligned quadrilaterals, conservative otherwise), intersected with
    the reference frame itself. Pixel ``i`` covers ``[i - 0.5, i + 0.5]``; bounds within 1e-3 px
    of a whole pixel are rounded to it, so identity transforms give the whole frame.

    Raises:
        StackError: the frames have no area in common (names the frame that moved most).
    """
    left, top, right, bottom = -0.5, -0.5, width - 0.5, height - 0.5
    for t in transforms:
        c = transform_corners(t, width, height)  # TL, TR, BR, BL pixel centres
        # pixel centres -> pixel edges: widen the outline by half a pixel along the image axes
        tl, tr, br, bl = c
        left = max(left, tl[0] - 0.5, bl[0] - 0.5)
        right = min(right, tr[0] + 0.5, br[0] + 0.5)
        top = max(top, tl[1] - 0.5, tr[1] - 0.5)
        bottom = min(bottom, bl[1] + 0.5, br[1] + 0.5)
    x0 = max(0, math.ceil(left + 0.5 - 1e-3))
    y0 = max(0, math.ceil(top + 0.5 - 1e-3))
    x1 = min(width, math.floor(right + 0.5 + 1e-3))
    y1 = min(height, math.floor(bottom + 0.5 + 1e-3))
    if x1 - x0 < 8 or y1 - y0 < 8:
        worst = int(np.argmax([corner_shift(t, width, height) for t in transforms])) if transforms else 0
        who = names[worst] if worst < len(names) else f"frame {worst}"
        raise StackError(
            "the aligned frames have no area in common",
            expected="frames that overlap (shifted or scaled by a few percent)",
            actual=f"{who} moved by {corner_shift(transforms[worst], width, height):.0f} px",
            fix="remove the frame that does not belong to the stack, pass --keep-size, or --no-align",
        )
    return Crop(x0, y0, x1, y1)


def warp_frame(
    frame: np.ndarray, t: np.ndarray, crop: Crop, *, tol: float = 1e-3
) -> tuple[np.ndarray, bool]:
    """Resample one frame into the output box.

    Args:
        frame: ``(H, W, 3)`` float32 in [0, 1].
        t: ``(3, 3)`` ``T_ref<-k`` (frame pixels -> reference pixels).
        crop: the output box in reference pixels (:func:`common_area`, or the whole frame for
            ``--keep-size``, where pixels no frame covers repeat the nearest edge pixel).
        tol: transforms moving no corner by ``tol`` px are treated as the identity.

    Returns:
        ``((crop.height, crop.width, 3) float32 in [0, 1], resampled)``: ``resampled`` is False
        when the frame was sliced (bit-exact), True when it was interpolated (Lanczos, float32, clipped to [0, 1]).
    """
    h, w = frame.shape[:2]
    if is_identity(t, w, h, tol):
        return np.ascontiguousarray(frame[crop.y0 : crop.y1, crop.x0 : crop.x1]), False
    shift = np.array([[1.0, 0.0, -crop.x0], [0.0, 1.0, -crop.y0], [0.0, 0.0, 1.0]])
    m = shift @ t
    m /= m[2, 2]
    size = (crop.width, crop.height)
    # Lanczos (8x8 taps), not bicubic: on devA warped like a breathing lens it kept 0.43 dB more
    # (fine texture survives the resampling); 0.4 s more per 4K frame, only for moved frames
    flags = cv2.INTER_LANCZOS4
    if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12:
        out = cv2.warpAffine(frame, m[:2], size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    else:
        out = cv2.warpPerspective(frame, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    np.clip(out, 0.0, 1.0, out=out)
    return out, True
