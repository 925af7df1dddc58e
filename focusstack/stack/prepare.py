"""Pass 2 of a stack: each frame read (or taken from pass 1's cache), warped into the output
box (:mod:`focusstack.align.warp`) and exposure-matched to the reference
(:mod:`focusstack.align.exposure`), when a slab needs it."""

from __future__ import annotations

import numpy as np

from focusstack.align.exposure import GainReference, apply_gains, estimate_gains
from focusstack.align.warp import warp_frame
from focusstack.config import AlignConfig
from focusstack.stack.analysis import Reader, StackAnalysis

__all__ = ["FramePreparer"]


class FramePreparer:
    """Pass 2: ``prepare(k) -> (crop.height, crop.width, 3) float32 in [0, 1]``: frame ``k``
    read (or taken from the pass-1 cache), warped into the output box, exposure-matched."""

    def __init__(self, analysis: StackAnalysis, read: Reader, config: AlignConfig) -> None:
        self.a = analysis
        self.read = read
        self.config = config
        self.gains: dict[int, list[float]] = {}
        self.resampled: dict[int, bool] = {}
        self.gain_applied: dict[int, bool] = {}
        self.reads = 0
        self.gain_ref: GainReference | None = None
        c, o = analysis.common, analysis.crop
        self.box = (slice(c.y0 - o.y0, c.y1 - o.y0), slice(c.x0 - o.x0, c.x1 - o.x0))  # common area in the output
        if config.enabled and config.exposure:
            ref = self._warped(analysis.reference, keep=True)
            self.gain_ref = GainReference(ref[self.box])
            del ref

    def _load(self, k: int, keep: bool = False) -> np.ndarray:
        frame = self.a.cache.get(k) if keep else self.a.cache.pop(k, None)
        if frame is None:
            frame = self.read(self.a.paths[k])
            self.reads += 1
        return frame.pixels

    def _warped(self, k: int, keep: bool = False) -> np.ndarray:
        pixels = self._load(k, keep)
        out, resampled = warp_frame(pixels, self.a.transforms[k], self.a.crop, tol=self.config.identity_tolerance)
        self.resampled[k] = resampled
        return out

    def prepare(self, k: int) -> np.ndarray:
        out = self._warped(k)
        if self.gain_ref is not None:
            g = np.ones(3) if k == self.a.reference else estimate_gains(self.gain_ref, out[self.box])
            self.gain_applied[k] = apply_gains(out, g, self.config.gain_tolerance)
            self.gains[k] = [round(float(v), 5) for v in g]
        return out

    def report(self) -> dict:
        a = self.a
        if not a.aligned:
            return {"enabled": False}
        frames = []
        for k in range(len(a.paths)):
            r = a.frame_report(k)
            r["resampled"] = self.resampled.get(k)
            if self.gain_ref is not None:
                r["gains"] = self.gains.get(k)
                r["gains_applied"] = self.gain_applied.get(k)
            frames.append(r)
        return {
            "enabled": True,
            "model": a.model,
            "reference": a.paths[a.reference].name,
            "keep_size": self.config.keep_size,
            "exposure": self.config.exposure,
            "crop": a.crop.to_dict(),
            "convention": "matrix maps frame pixels (x, y, 1) to reference pixels, before the crop",
            "frames": frames,
        }
