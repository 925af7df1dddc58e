"""Filters on float32 planes: Gaussian, box and the guided filter (He, Sun and Tang 2010).

Every filter here mirrors the border (``BORDER_REFLECT_101``) and keeps the input's dtype.
"""

from __future__ import annotations

import cv2
import numpy as np

from focusstack.ops.memory import Scratch

#: The border every filter of the package uses.
BORDER = cv2.BORDER_REFLECT_101


def gaussian(x: np.ndarray, sigma: float, truncate: float | None = None) -> np.ndarray:
    """Isotropic Gaussian blur of an ``(H, W)`` or ``(H, W, C)`` float32/64 array with ``sigma``
    px, mirrored border, same shape and dtype out.

    ``truncate=None``: OpenCV's own kernel size for ``sigma`` (``ksize = (0, 0)``). A number:
    the kernel radius is ``ceil(truncate * sigma)``, and ``sigma <= 0`` returns a copy (the
    transition-region paper's Eq. 2 uses ``truncate=4``).
    """
    if truncate is None:
        return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=BORDER)
    if sigma <= 0:
        return np.array(x, copy=True)
    r = int(np.ceil(truncate * sigma))
    return cv2.GaussianBlur(x, (2 * r + 1, 2 * r + 1), float(sigma), borderType=BORDER)


def box(x: np.ndarray, size: int) -> np.ndarray:
    """Normalised box mean of side ``size`` (odd) of an ``(H, W)`` float32 plane, mirrored border."""
    return cv2.boxFilter(x, cv2.CV_32F, (size, size), normalize=True, borderType=BORDER)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He, Sun and Tang 2010). ``(H, W)`` float32 guide and source ->
    ``(H, W)`` float32. ``radius`` in pixels (box ``2r+1``), ``eps`` the regularisation."""
    if guide.shape != src.shape or guide.ndim != 2:
        raise ValueError(f"guide and src must be one (H, W) shape, got {guide.shape} and {src.shape}")
    return GuidedFilter(guide, radius, eps)(src)


class GuidedFilter:
    """Guided filter with the guide's statistics computed once, for many sources.

    ``subsample`` > 1 is He and Sun's *fast* guided filter (2015): the box statistics and the
    linear coefficients are computed on images downscaled by that factor (radius scaled with
    them) and only the coefficients are brought back to full size, ``s^2`` times cheaper, with
    an output that is visually the same (the coefficients are smooth)."""

    def __init__(self, guide: np.ndarray, radius: int, eps: float, subsample: int = 1) -> None:
        self.guide = guide.astype(np.float32, copy=False)
        self.s = max(1, int(subsample))
        h, w = self.guide.shape
        self.small_size = (max(1, round(w / self.s)), max(1, round(h / self.s)))
        r = max(1, int(round(radius / self.s)))
        self.size = (2 * r + 1, 2 * r + 1)
        g = self._down(self.guide)
        self.g_small = g
        self.mean_i = self._box(g)
        var = self._box(g * g)
        var -= self.mean_i * self.mean_i
        var += np.float32(eps)
        self.inv = np.reciprocal(var, out=var)
        self._scratch = Scratch()  # the upsampled b of __call__(out=...)

    def _down(self, x: np.ndarray) -> np.ndarray:
        if self.s == 1:
            return x.astype(np.float32, copy=False)
        return cv2.resize(x.astype(np.float32, copy=False), self.small_size, interpolation=cv2.INTER_AREA)

    def _up(self, x: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        if self.s > 1:
            return cv2.resize(x, self.guide.shape[::-1], dst=dst, interpolation=cv2.INTER_LINEAR)
        if dst is None:
            return x
        np.copyto(dst, x)
        return dst

    def _box(self, x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, self.size, normalize=True, borderType=BORDER)

    def __call__(self, p: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The filtered ``p`` (``(H, W)``, the guide's shape) as float32, written into ``out``
        (``(H, W)`` float32) when given: a caller filtering many planes and keeping only part
        of each reuses one buffer instead of fresh full-size pages per plane."""
        p = self._down(p)
        mean_p = self._box(p)
        a = self._box(self.g_small * p)
        a -= self.mean_i * mean_p
        a *= self.inv  # a = cov(I, p) / (var(I) + eps)
        mean_p -= a * self.mean_i  # b = mean_p - a mean_I
        if out is not None and (out.shape != self.guide.shape or out.dtype != np.float32):
            raise ValueError(f"out must be float32 of shape {self.guide.shape}, got {out.dtype} {out.shape}")
        q = self._up(self._box(a), out)
        q *= self.guide
        # (the upsampled b goes into a reused plane too; at s = 1 it is a fresh box filter anyway)
        q += self._up(self._box(mean_p), self._scratch.get(q.shape) if out is not None and self.s > 1 else None)
        return q
