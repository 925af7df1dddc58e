"""Relative-blur test at the boundaries of a decision map: which of two frames is the sharp one,
asked of the imaging model instead of a focus measure.

Where the decision map puts frame ``i`` next to frame ``j``, one of them is in focus on each
side. If frame ``i`` is the sharp one at a pixel, blurring it by the defocus that separates the
two frames predicts frame ``j`` there: ``y_j ~ K_r * y_i`` (in linear light, where defocus adds
light), while blurring ``y_j`` does not give back the sharp ``y_i``. So each pixel of the band
around their shared boundary takes the frame whose re-blurred copy explains the other one
better:

    R_i = G_w * |y_j - K_r * y_i|,   R_j = G_w * |y_i - K_r * y_j|,   label = i if R_i < R_j.

``K_r`` is the defocus PSF of radius ``r`` (:func:`defocus_blur`), fitted per pair
on the two regions away from their boundary, where the map is trusted: ``r`` minimises
``mean |K_r * y_i - y_j|`` over region ``i`` plus the same over region ``j`` (eroded by
``r + 2`` px). One ``r`` serves both directions: under the thin-lens model an object at the
focus distance of frame ``i`` is as blurred in frame ``j`` as frame ``j``'s object is in frame
``i`` (the same difference of inverse distances).

Why it helps where a focus measure fails: inside the silhouette of a near object, the far frame
shows the background's texture through the semi-transparent rim of the blurred object, so it
has *more* detail there than the near frame over a smooth object (a dark shirt, skin) and a
focus measure hands that rim to the far frame. The re-blur test sees that the far frame is the
near frame blurred, plus a dimmed background, and keeps the near frame. In the halo on the
background side the near frame (the background blurred, no spill) wins too, and is closer to
the truth there than the far frame with its spill. Measured on devbench (docs/decision.md):
devA +0.6 dB (band +0.7), devTR +0.6 dB, mfvoc +1.4 dB.

Arrays: luminance planes ``(H, W)`` float32 in [0, 1] *linear light*
(:func:`linear_luminance`), labels ``(H, W)`` uint8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np


_BORDER = cv2.BORDER_REFLECT_101
_K3 = np.ones((3, 3), np.uint8)

#: The pillbox radius whose blur :func:`fit_pair_blur` reports as radius 1. The fit models the
#: PSF as a Gaussian of sigma ``r / 2`` (:func:`defocus_blur`); fitted by L1 to a pillbox (a
#: disc with an antialiased rim, :func:`focusstack.maps.halo` 's PSF) of radius 2.5 to 18 px,
#: it reports 1.086 to 1.117 times that radius (median 1.09 over six BSDS photos; 1.11 to 1.13
#: on synthetic 1/f textures, ``tests/test_reblur.py``). Code that needs the disc itself, the
#: halo's un-compositing, divides by it (:func:`pillbox_radius`); the re-blur test keeps the
#: Gaussian (docs/decision.md step 3c).
FIT_PER_PILLBOX = 1.09


def pillbox_radius(fit_radius: float) -> float:
    """The radius (px) of the pillbox whose blur :func:`fit_pair_blur` fits as ``fit_radius``."""
    return fit_radius / FIT_PER_PILLBOX


def defocus_blur(y: np.ndarray, radius: float) -> np.ndarray:
    """``(H, W)`` float32 blurred by the defocus PSF of ``radius`` px, modelled as a Gaussian of
    sigma ``radius / 2`` (the standard deviation of a disc of that radius): on devbench a
    pillbox gave the same decisions (devA -0.01, mfvoc +0.07 dB for the Gaussian) at three
    times the cost (a disc is not separable)."""
    if not radius > 0:
        raise ValueError(f"radius must be > 0 px, got {radius}")
    return cv2.GaussianBlur(y, (0, 0), radius / 2.0, borderType=_BORDER)


def _fit_error(yi, yj, di, dj, radius: float, min_px: int) -> float | None:  # noqa: ANN001
    """Mean re-blur error of the pair at ``radius`` over both regions eroded by ``radius + 2``
    (``di``/``dj``: distance of each pixel to the outside of region i/j). None: a region is
    then too small to say."""
    e = radius + 2.0
    a, b = di > e, dj > e
    if int(a.sum()) < min_px or int(b.sum()) < min_px:
        return None
    return float(np.abs(defocus_blur(yi, radius) - yj)[a].mean() + np.abs(defocus_blur(yj, radius) - yi)[b].mean())


def fit_pair_radius(
    yi: np.ndarray, yj: np.ndarray, region_i: np.ndarray, region_j: np.ndarray, max_radius: float, *, min_px: int = 200
) -> float | None:
    """The defocus radius (px) that best turns each frame into the other over the other's
    region, or None (see :func:`fit_pair_blur`)."""
    fit = fit_pair_blur(yi, yj, region_i, region_j, max_radius, min_px=min_px)
    return None if fit is None else fit[0]


def fit_pair_blur(
    yi: np.ndarray, yj: np.ndarray, region_i: np.ndarray, region_j: np.ndarray, max_radius: float, *, min_px: int = 200
) -> tuple[float, float] | None:
    """The defocus radius (px) that best turns each frame into the other over the other's region,
    and how much of the frames' difference it explains.

    Args:
        yi, yj: ``(H, W)`` float32 linear luminance of the two frames.
        region_i, region_j: ``(H, W)`` bool, where the decision map chose ``i`` / ``j``.
        max_radius: largest radius searched (px).
        min_px: fewest pixels each eroded region needs.

    Returns:
        ``(radius, relative error)``: the error at that radius divided by the error with no
        blur (1: the blur explains nothing of the difference), or None when a region is too
        small (or the pair too thin) to fit one. Searched at half size (a golden-section
        search on log radius, then doubled): the error is smooth and unimodal in the radius on
        every devbench pair.
    """
    if yi.shape != yj.shape or region_i.shape != yi.shape or region_j.shape != yi.shape:
        raise ValueError(f"planes and regions must share one (H, W) shape, got {yi.shape}, {yj.shape}, {region_i.shape}, {region_j.shape}")
    h, w = yi.shape
    half = (max(8, w // 2), max(8, h // 2))
    si, sj = (cv2.resize(y, half, interpolation=cv2.INTER_AREA) for y in (yi, yj))
    di, dj = (cv2.distanceTransform((cv2.resize(r.astype(np.uint8), half, interpolation=cv2.INTER_NEAREST)), cv2.DIST_L2, 3)
              for r in (region_i, region_j))
    lo, hi = math.log(0.35), math.log(max(0.5, max_radius / 2.0))
    if hi <= lo:
        return None
    cache: dict[float, float] = {}

    def err(t: float) -> float:
        if t not in cache:
            v = _fit_error(si, sj, di, dj, math.exp(t), max(16, min_px // 4))
            cache[t] = math.inf if v is None else v
        return cache[t]

    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(10):
        if err(c) <= err(d):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    t_best = min(cache, key=cache.get)
    if not math.isfinite(cache[t_best]):
        return None
    unblurred = _fit_error(si, sj, di, dj, 0.05, max(16, min_px // 4))
    relative = cache[t_best] / unblurred if unblurred else 1.0
    return 2.0 * math.exp(t_best), float(relative)


def pair_seams(labels: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """``{(i, j): (H, W) bool}``: the boundary pixels between labels ``i < j`` that touch."""
    hi = cv2.dilate(labels, _K3, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(labels, _K3, borderType=cv2.BORDER_REPLICATE)
    edge = hi != lo
    out: dict[tuple[int, int], np.ndarray] = {}
    if not edge.any():
        return out
    present = [int(v) for v in np.unique(labels)]
    grown = {v: cv2.dilate((labels == v).astype(np.uint8), _K3).astype(bool) for v in present}
    for n, i in enumerate(present):
        for j in present[n + 1:]:
            seam = edge & grown[i] & grown[j]
            if seam.any():
                out[(i, j)] = seam
    return out


def relabel_by_reblur(
    lumas: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    encoded: Sequence[np.ndarray] | None = None,
    window: float = 1.0,
    max_radius: float = 40.0,
    min_radius: float = 1.0,
    min_seam: int = 20,
    margin: float = 0.0,
    floor: float = 0.0,
) -> tuple[np.ndarray, list[dict]]:
    """Re-decide the band around every boundary of ``labels`` by the relative-blur test.

    Args:
        lumas: ``K x (H, W)`` float32 *linear-light* luminance in [0, 1].
        labels: ``(H, W)`` uint8 decision map (values < K).
        encoded: the same planes sRGB-encoded, or None. When given, each pair is tested in the
            domain whose fitted blur explains more of the frames' difference (relative error of
            :func:`fit_pair_blur`): optics blur linear light, but a camera's tone curve or a
            synthetic set (MF-VOC blurs encoded values) may not. devbench: devA and devTR the
            same means (scenes within 0.03 dB); MF-VOC +0.13 dB.
        window: sigma (px) of the Gaussian that aggregates the re-blur errors.
        max_radius: largest defocus radius (px) fitted between two frames.
        min_radius: pairs whose fitted radius is below this are left alone (their frames
            differ too little in blur for the test, and for the output).
        min_seam: pairs sharing fewer boundary pixels are left alone.
        margin, floor: a pixel changes hands only where the losing error exceeds the winning
            one by this ratio and this absolute amount (in [0, 1] units of the tested domain):
            in flat regions both errors are noise, and a bare comparison would scatter labels.

    Returns:
        ``(labels (H, W) uint8, pairs)``; ``pairs`` lists ``{"frames": [i, j], "radius_px",
        "domain" ("linear" | "encoded"), "band_px", "changed_px"}`` for every pair tested.
    """
    k = len(lumas)
    if labels.ndim != 2 or any(y.shape != labels.shape for y in lumas):
        raise ValueError(f"labels must be (H, W) and every luminance plane the same shape, got {labels.shape}")
    if encoded is not None and (len(encoded) != k or any(y.shape != labels.shape for y in encoded)):
        raise ValueError(f"encoded must hold K = {k} planes of shape {labels.shape}")
    if int(labels.max(initial=0)) >= k:
        raise ValueError(f"labels must be < K = {k}, got max {int(labels.max())}")
    h, w = labels.shape
    out = labels.copy()
    report: list[dict] = []
    for (i, j), seam in pair_seams(labels).items():
        n_seam = int(seam.sum())
        if n_seam < min_seam:
            continue
        ys, xs = np.nonzero(seam)
        m = int(math.ceil(2 * max_radius)) + 4  # the fit looks this far from the seam
        y0, y1, x0, x1 = max(0, ys.min() - m), min(h, ys.max() + m + 1), max(0, xs.min() - m), min(w, xs.max() + m + 1)
        crop = np.s_[y0:y1, x0:x1]
        lab = labels[crop]
        ri, rj = lab == i, lab == j
        yi, yj = lumas[i][crop], lumas[j][crop]
        fit = fit_pair_blur(yi, yj, ri, rj, max_radius)
        domain = "linear"
        if fit is not None and encoded is not None:
            ei, ej = encoded[i][crop], encoded[j][crop]
            other = fit_pair_blur(ei, ej, ri, rj, max_radius)
            if other is not None and other[1] < fit[1]:
                fit, yi, yj, domain = other, ei, ej, "encoded"
        if fit is None or fit[0] < min_radius:
            continue
        r = fit[0]
        width = int(math.ceil(r)) + 2
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        band = (cv2.dilate(seam[crop].astype(np.uint8), ker) > 0) & (ri | rj)
        e_i = cv2.GaussianBlur(np.abs(yj - defocus_blur(yi, r)), (0, 0), window, borderType=_BORDER)
        e_j = cv2.GaussianBlur(np.abs(yi - defocus_blur(yj, r)), (0, 0), window, borderType=_BORDER)
        target = out[crop]
        new = target.copy()
        new[e_i * np.float32(1.0 + margin) + np.float32(floor) < e_j] = i
        new[e_j * np.float32(1.0 + margin) + np.float32(floor) < e_i] = j
        changed = int((target[band] != new[band]).sum())
        target[band] = new[band]
        report.append({"frames": [i, j], "radius_px": round(r, 2), "domain": domain, "band_px": int(band.sum()), "changed_px": changed})
    return out, report
