"""Filters on float32 planes: Gaussian, box and the guided filter (He, Sun and Tang 2010), with
a grey or a colour guide.

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


def color_guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1) -> np.ndarray:
    """Colour-guide guided filter (He, Sun and Tang 2010, section 3.5): ``src`` made locally an
    affine function of the guide's three channels. ``(H, W, 3)`` float32 guide (any range; eps
    is in its units squared), ``(H, W)`` float32 source -> ``(H, W)`` float32. It follows an
    edge between two colours of equal luminance, which the grey guide cannot see (the halo
    matte, :mod:`focusstack.maps.halo`). Six box filters of the guide's products plus four of
    the source; the 3x3 inverse per pixel in closed form. ``subsample`` > 1: the statistics and
    coefficients on images that much smaller (He and Sun's fast guided filter, as
    :class:`GuidedFilter`), only the output at full size."""
    if guide.ndim != 3 or guide.shape[2] != 3 or src.shape != guide.shape[:2]:
        raise ValueError(f"guide must be (H, W, 3) and src (H, W) of the same H, W; got {guide.shape} and {src.shape}; "
                         "pass a colour image and one plane of its size")
    h, w = src.shape
    s = max(1, int(subsample))
    full = [np.ascontiguousarray(guide[..., c], dtype=np.float32) for c in range(3)]
    p = src.astype(np.float32, copy=False)
    if s > 1:
        small = (max(1, round(w / s)), max(1, round(h / s)))
        g = [cv2.resize(c, small, interpolation=cv2.INTER_AREA) for c in full]
        p = cv2.resize(p, small, interpolation=cv2.INTER_AREA)
    else:
        g = full
    size = 2 * max(1, int(round(radius / s))) + 1
    m = [box(c, size) for c in g]
    mp = box(p, size)
    cov = [box(c * p, size) - mc * mp for c, mc in zip(g, m)]
    e = np.float32(eps)
    v = {(a, b): box(g[a] * g[b], size) - m[a] * m[b] + (e if a == b else 0) for a in range(3) for b in range(a, 3)}
    # inverse of the symmetric [[rr, rg, rb], [rg, gg, gb], [rb, gb, bb]] by cofactors
    rr, rg, rb, gg, gb, bb = v[0, 0], v[0, 1], v[0, 2], v[1, 1], v[1, 2], v[2, 2]
    i_rr, i_rg, i_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    i_gg, i_gb, i_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    inv_det = 1.0 / (rr * i_rr + rg * i_rg + rb * i_rb)
    a = [(i_rr * cov[0] + i_rg * cov[1] + i_rb * cov[2]) * inv_det,
         (i_rg * cov[0] + i_gg * cov[1] + i_gb * cov[2]) * inv_det,
         (i_rb * cov[0] + i_gb * cov[1] + i_bb * cov[2]) * inv_det]
    b = mp - a[0] * m[0] - a[1] * m[1] - a[2] * m[2]

    def up(x: np.ndarray) -> np.ndarray:
        x = box(x, size)
        return cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR) if s > 1 else x

    q = up(b)
    for c in range(3):
        q += up(a[c]) * full[c]
    return q


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
