"""Blur-matched registration: align two frames focused at different distances by comparing
them after giving both the *same* blur everywhere.

Where frame ``a`` is sharp and frame ``b`` blurred, ``K_r * a ~ b`` (``K_r`` the defocus PSF
that separates them, :mod:`focusstack.maps.reblur`); where ``b`` is sharp, ``K_r * b ~ a``.
So the two composites

    C_a = K_r * a  where a is the sharper,  a          elsewhere
    C_b = b        where a is the sharper,  K_r * b    elsewhere

show every region once blurred and are alike everywhere (up to the halo of a blurred
foreground). Plain ECC compares a sharp edge with its blurred self: on devA's 2-frame stacks
warped like a breathing lens it was off by 0.4 to 18 px at the corners (the blurred
foreground's spread reads as a scale change); ECC on the composites, started from that
estimate, by 0.05 to 0.55 px (docs/align.md).

Arrays: grey images ``(h, w)`` float32 in [0, 1], sRGB-encoded luminance at the working size;
transforms ``(3, 3)`` float64 mapping *moving* pixels to *fixed* pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from focusstack.align.registration import project_similarity, transform_corners
from focusstack.maps.reblur import defocus_blur, fit_pair_radius
from focusstack.ops import focus_measure, linear_luminance

_MOTION = {"similarity": cv2.MOTION_AFFINE, "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}


@dataclass(frozen=True)
class BlurMatch:
    """``transform``: moving -> fixed; ``radius_px``: the defocus radius between the frames;
    ``residual``/``residual_identity``: ``1 - NCC`` of the composites under the transform and
    under the identity; ``correlation``: ECC's on the composites."""

    transform: np.ndarray
    radius_px: float
    residual: float
    residual_identity: float
    correlation: float

    @property
    def ratio(self) -> float:
        return self.residual / self.residual_identity if self.residual_identity > 1e-9 else 1.0


def _composites(fixed_lin: np.ndarray, moving_lin: np.ndarray, sharper_moving: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    smooth = max(1.0, radius / 4.0)  # ECC wants smooth images; the composites are blurred anyway
    cf = np.where(sharper_moving, fixed_lin, defocus_blur(fixed_lin, radius))
    cm = np.where(sharper_moving, defocus_blur(moving_lin, radius), moving_lin)
    return (cv2.GaussianBlur(cf.astype(np.float32), (0, 0), smooth, borderType=cv2.BORDER_REFLECT_101),
            cv2.GaussianBlur(cm.astype(np.float32), (0, 0), smooth, borderType=cv2.BORDER_REFLECT_101))


def _ncc_residual(a: np.ndarray, b: np.ndarray, margin: int) -> float:
    """``1 - NCC`` of two same-size images away from a ``margin`` px border."""
    a = np.ascontiguousarray(a[margin:-margin or None, margin:-margin or None], np.float32)
    b = np.ascontiguousarray(b[margin:-margin or None, margin:-margin or None], np.float32)
    if float(a.std()) < 1e-9 or float(b.std()) < 1e-9:
        return 0.0  # flat: nothing to compare
    return 1.0 - float(cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)[0, 0])


def _measure(gray: np.ndarray) -> np.ndarray:
    """The smoothed focus measure that says which frame is the sharper where."""
    return cv2.GaussianBlur(focus_measure(gray), (0, 0), max(2.0, 0.008 * min(gray.shape)))


class PreparedFrame:
    """What the refinement needs of one grey frame ``(h, w)`` float32 in [0, 1]: its linear-light
    luminance and its smoothed focus measure, computed on first use and kept."""

    __slots__ = ("gray", "_linear", "_measure")

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self._linear: np.ndarray | None = None
        self._measure: np.ndarray | None = None

    @property
    def linear(self) -> np.ndarray:
        if self._linear is None:
            self._linear = linear_luminance(self.gray)
        return self._linear

    @property
    def measure(self) -> np.ndarray:
        if self._measure is None:
            self._measure = _measure(self.gray)
        return self._measure


def _warp(img: np.ndarray, t: np.ndarray) -> np.ndarray:
    h, w = img.shape
    return cv2.warpPerspective(img, t, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def blur_matched_refine(
    fixed: np.ndarray,
    moving: np.ndarray,
    t0: np.ndarray,
    model: str,
    *,
    max_radius: float = 0.05,
    min_radius: float = 1.0,
    rounds: int = 2,
    prepared: tuple[PreparedFrame, PreparedFrame] | None = None,
) -> BlurMatch | None:
    """Refine ``t0`` (moving -> fixed) by ECC on blur-matched composites.

    Args:
        fixed, moving: ``(h, w)`` float32 encoded luminance in [0, 1], one size.
        t0: ``(3, 3)`` starting transform, moving -> fixed.
        model: ``"similarity" | "affine" | "homography"`` (a similarity is fitted as an
            affine transform and projected back).
        max_radius: largest defocus radius searched, as a fraction of the longer side.
        min_radius: below this radius (px) the frames are equally sharp and plain ECC is as
            good: None is returned.
        rounds: composite-and-register rounds (the sharper-frame map and the radius are
            re-estimated on the registered frames each round).
        prepared: the two frames' :class:`PreparedFrame` (fixed, moving), when the caller keeps
            them (a chain prepares each frame once for both of its pairs).

    Returns:
        :class:`BlurMatch`, or None when no radius could be fitted (no region where one frame
        is the sharper, or the frames equally sharp) or ECC failed.
    """
    if fixed.shape != moving.shape or fixed.ndim != 2:
        raise ValueError(f"fixed and moving must be (h, w) of one size, got {fixed.shape} and {moving.shape}")
    h, w = fixed.shape
    pf, pm = prepared if prepared is not None else (PreparedFrame(fixed), PreparedFrame(moving))
    lf, lm_raw = pf.linear, pm.linear
    t = np.array(t0, np.float64)
    motion = _MOTION[model]
    margin = max(2, int(0.02 * max(h, w)))
    radius = None
    rho = float("nan")
    m_fixed, m_moving = pf.measure, pm.measure  # warped with the frame, not recomputed
    for _ in range(rounds):
        sharper = _warp(m_moving, t) > m_fixed
        lm = _warp(lm_raw, t)
        r = fit_pair_radius(lf, lm, ~sharper, sharper, max_radius * max(h, w))
        if r is None or r < min_radius:
            return None
        radius = r
        cf, cm = _composites(lf, lm, sharper, r)
        # ECC at half size (frames of 400 px and more): the composites carry no detail finer
        # than the blur (r >= 1 px)
        half = 2.0 if min(h, w) >= 400 else 1.0
        if half > 1.0:
            size = (int(round(w / half)), int(round(h / half)))
            cf, cm = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (cf, cm))
        warp = np.eye(3, dtype=np.float32)[: (3 if motion == cv2.MOTION_HOMOGRAPHY else 2)]
        try:
            rho, warp = cv2.findTransformECC(cf, cm, warp, motion, (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5), None, 1)
        except cv2.error:
            return None
        full = np.eye(3)
        full[: warp.shape[0]] = warp
        if half > 1.0:  # back to working pixels
            down = np.diag([1.0 / half, 1.0 / half, 1.0])
            full = np.linalg.inv(down) @ full @ down
        step = np.linalg.inv(full)  # ECC's warp maps fixed -> moving-composite coordinates
        step /= step[2, 2]
        t = step @ t
        t /= t[2, 2]
        if np.abs(transform_corners(step, w, h) - transform_corners(np.eye(3), w, h)).max() < 0.05:  # converged
            break
    assert radius is not None
    if model == "similarity":
        t = project_similarity(t, w, h)
    # the verdict: composites under the transform, and under the identity, with one map
    cf, cm = _composites(lf, _warp(lm_raw, t), _warp(m_moving, t) > m_fixed, radius)
    e_t = _ncc_residual(cf, cm, margin)
    cf0, cm0 = _composites(lf, lm_raw, m_moving > m_fixed, radius)
    e_id = _ncc_residual(cf0, cm0, margin)
    return BlurMatch(t, float(radius), float(e_t), float(e_id), float(rho))
