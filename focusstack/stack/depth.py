"""Depth maps: for every pixel, the focus-order index of the frame that is sharpest there.

:class:`DepthAccumulator` is fed the prepared (aligned, cropped) frames one at a time, in any
order, each with its position in the focus order; it keeps only three planes at the working
size (best measure, worst measure, index of the best), so a stack of any length costs the same.
:meth:`DepthAccumulator.finish` then

1. marks pixels with too little evidence (best minus worst focus measure below
   ``min_evidence``: every frame shows the same flat colour, no frame is sharp there),
2. smooths the index (median, then Gaussian, over the decided pixels only),
3. inpaints the undecided pixels from their decided neighbourhood (``cv2.inpaint``, Telea),
4. brings the map to the output size.

The focus measure is the decision engine's (``focusstack.ops.focus.focus_measure``), with
the same aggregation, so the depth map and the decision agree where the evidence is clear.

The map is written by :func:`write_depth_map` as a 16-bit PNG or TIFF (grey, stored in three
equal channels): ``value / 65535 * (K - 1)`` is the focus-order index (0: the first frame of
the focus order). :func:`write_depth_preview` writes a colour-mapped 8-bit image (turbo).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from focusstack.ops import focus_measure, luminance
from focusstack.errors import UsageError
from focusstack.io import write_image

#: Largest area (px) the measures are computed at (larger frames are downscaled, area average).
WORK_PIXELS = 1_000_000
#: Aggregation sigma of the measures, as a fraction of the shorter side (as the decision engine).
AGGREGATE = 0.006
#: Mean log energy ratio between the sharpest and the blurriest frame below which no frame is
#: sharp at a pixel (as the decision engine's ``min_evidence``).
MIN_EVIDENCE = 0.05
#: Final smoothing sigma, as a fraction of the shorter side.
SMOOTH = 0.004
DEPTH_EXTENSIONS = (".png", ".tif", ".tiff")


@dataclass
class DepthMap:
    """``index`` ``(H, W)`` float32 in ``[0, frames - 1]`` (focus-order index, smoothed and
    inpainted); ``decided`` ``(H, W)`` bool, where some frame was clearly sharpest."""

    index: np.ndarray
    decided: np.ndarray
    frames: int

    def normalised(self) -> np.ndarray:
        """``(H, W)`` float32 in [0, 1]: ``index / (frames - 1)`` (0 for a single frame)."""
        return (self.index / max(1, self.frames - 1)).astype(np.float32)

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "decided_fraction": round(float(self.decided.mean()), 4),
            "encoding": "value / 65535 * (frames - 1) = index in the focus order",
        }


class DepthAccumulator:
    """Streams frames into a depth map. ``update(position, frame)`` with ``frame`` ``(H, W, 3)``
    float32 in [0, 1] (every frame one size) and ``position`` its index in the focus order."""

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"a depth map needs at least 1 frame, got {frames}")
        self.frames = frames
        self.shape: tuple[int, int] | None = None
        self.work: tuple[int, int] | None = None
        self.best: np.ndarray | None = None
        self.worst: np.ndarray | None = None
        self.arg: np.ndarray | None = None
        self.seen: set[int] = set()

    def update(self, position: int, frame: np.ndarray) -> None:
        if not 0 <= position < self.frames:
            raise ValueError(f"focus-order position {position} out of range 0..{self.frames - 1}")
        if position in self.seen:
            return
        h, w = frame.shape[:2]
        if self.shape is None:
            self.shape = (h, w)
            scale = min(1.0, math.sqrt(WORK_PIXELS / (h * w)))
            self.work = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
        elif (h, w) != self.shape:
            raise ValueError(f"depth map frames must share one size, got {self.shape} and {(h, w)}")
        y = luminance(frame)
        mh, mw = self.work
        if (mh, mw) != (h, w):
            y = cv2.resize(y, (mw, mh), interpolation=cv2.INTER_AREA)
        m = focus_measure(y)
        sigma = max(1.0, AGGREGATE * min(mh, mw))
        m = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        if self.best is None:
            self.best, self.worst = m.copy(), m
            self.arg = np.full((mh, mw), position, np.float32)
        else:
            better = m > self.best
            self.arg[better] = position
            np.maximum(self.best, m, out=self.best)
            np.minimum(self.worst, m, out=self.worst)
        self.seen.add(position)

    def finish(self, shape: tuple[int, int] | None = None) -> DepthMap:
        """The depth map at ``shape`` ``(H, W)`` (default: the frames' size)."""
        if self.best is None or self.shape is None:
            raise ValueError("no frame was given to the depth map")
        h, w = shape or self.shape
        decided = (self.best - self.worst) >= MIN_EVIDENCE if len(self.seen) > 1 else np.ones_like(self.best, bool)
        index = self.arg.astype(np.float32)
        mh, mw = index.shape
        if decided.any() and min(mh, mw) >= 3:
            index = cv2.medianBlur(index, 3 if min(mh, mw) < 64 else 5)
            if not decided.all():  # fill where no frame is sharp from the decided neighbourhood
                radius = max(3, int(round(0.02 * min(mh, mw))))
                index = cv2.inpaint(index, (~decided).astype(np.uint8), radius, cv2.INPAINT_TELEA)
            sigma = max(0.5, SMOOTH * min(mh, mw))
            index = cv2.GaussianBlur(index, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        elif not decided.any():
            index = np.full_like(index, (self.frames - 1) / 2.0)  # nothing is sharp anywhere
        if (mh, mw) != (h, w):
            index = cv2.resize(index, (w, h), interpolation=cv2.INTER_LINEAR)
            decided = cv2.resize(decided.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        index = np.clip(index, 0, self.frames - 1).astype(np.float32)
        return DepthMap(index=index, decided=decided, frames=self.frames)


def check_depth_path(path: Path, what: str = "--depth-map") -> None:
    """Refuse suffixes a 16-bit depth map cannot have (before any work)."""
    if Path(path).suffix.lower() not in DEPTH_EXTENSIONS:
        raise UsageError(
            f"{what} {path}: a depth map is a 16-bit image",
            expected=" | ".join(DEPTH_EXTENSIONS),
            actual=repr(Path(path).suffix or Path(path).name),
            fix=f"name it {Path(path).with_suffix('.png').name}",
        )


def write_depth_map(path: Path, depth: DepthMap, *, overwrite: bool, protected: Iterable[Path] = ()) -> Path:
    """16-bit grey (three equal channels) PNG or TIFF; ``value / 65535 * (frames - 1)`` = index."""
    check_depth_path(path)
    g = depth.normalised()
    return write_image(path, np.repeat(g[:, :, None], 3, axis=2), bit_depth=16, overwrite=overwrite, protected=protected)


def colorize(depth: DepthMap) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1]: the turbo colour map of the normalised index (blue: the
    first frame of the focus order, red: the last)."""
    g = np.round(depth.normalised() * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(g, cv2.COLORMAP_TURBO)
    return (bgr[:, :, ::-1].astype(np.float32) / 255.0).copy()


def write_depth_preview(path: Path, depth: DepthMap, *, overwrite: bool, protected: Iterable[Path] = ()) -> Path:
    """8-bit colour-mapped preview (any output format: .png, .jpg, .tif)."""
    return write_image(path, colorize(depth), bit_depth=8, overwrite=overwrite, protected=protected)
