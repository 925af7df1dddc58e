"""Frame-to-frame registration: coarse-to-fine ECC on a band-passed grey image.

All transforms are ``(3, 3)`` float64 matrices acting on homogeneous pixel coordinates
``(x, y, 1)`` with pixel centres at integers (OpenCV's convention). ``T_a<-b`` maps a point of
frame ``b`` to the same scene point in frame ``a``.

Why these choices (details in docs/align.md):

* **Band-pass feature image** (:func:`feature_image`): the frames of a focus stack differ in
  *blur*, not only in position. A difference of Gaussians keeps the mid frequencies that
  neighbouring frames share, drops the finest detail (present in only one of them) and the
  lowest frequencies (vignetting, exposure gradients). ECC is invariant to a global gain and
  offset, so exposure differences do not matter here.
* **Pyramid** (:func:`register_pair`): ECC is a local optimiser; it starts at a coarse level
  (after a phase-correlation guess of the shift) and refines level by level to the working
  resolution (``AlignConfig.max_side``).
* **Similarity** is estimated as an ECC affine warp projected onto the nearest similarity
  (:func:`project_similarity`): OpenCV's ECC has no 4-parameter model.
"""

from __future__ import annotations

import cv2
import numpy as np

from focusstack.errors import StackError

__all__ = [
    "MODELS",
    "build_pyramid",
    "PairResult",
    "corner_shift",
    "downscale_matrix",
    "feature_image",
    "register_pair",
    "project_similarity",
    "rescale_transform",
    "transform_corners",
]

MODELS = ("similarity", "affine", "homography")
_ECC_MOTION = {"similarity": cv2.MOTION_AFFINE, "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}


def downscale_matrix(scale_x: float, scale_y: float | None = None) -> np.ndarray:
    """``(3, 3)``: full-resolution pixel coordinates -> coordinates after ``cv2.resize`` by
    ``scale`` (pixel centres: ``x' = (x + 0.5) s - 0.5``)."""
    sy = scale_x if scale_y is None else scale_y
    return np.array(
        [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], np.float64
    )


def rescale_transform(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """A transform measured in coordinates ``s`` maps to: ``S^-1 T S`` (``(3, 3)`` float64)."""
    out = np.linalg.inv(s) @ t @ s
    return out / out[2, 2]


def transform_corners(t: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(4, 2)`` float64: the image corners (TL, TR, BR, BL pixel centres) mapped by ``t``."""
    c = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], np.float64)
    m = c @ t.T
    return m[:, :2] / m[:, 2:3]


def corner_shift(t: np.ndarray, width: int, height: int) -> float:
    """Largest displacement (px) of an image corner under ``t``: 0 for the identity."""
    c = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    return float(np.max(np.linalg.norm(transform_corners(t, width, height) - c, axis=1)))


def feature_image(gray: np.ndarray, sigma_fine: float = 1.0, sigma_coarse: float = 8.0) -> np.ndarray:
    """``(H, W)`` float32 grey in [0, 1] -> ``(H, W)`` float32 band-pass (difference of
    Gaussians), normalised to unit standard deviation. Defocus-robust input for ECC."""
    g = gray.astype(np.float32, copy=False)
    fine = cv2.GaussianBlur(g, (0, 0), sigma_fine, borderType=cv2.BORDER_REFLECT_101)
    coarse = cv2.GaussianBlur(g, (0, 0), sigma_coarse, borderType=cv2.BORDER_REFLECT_101)
    fine -= coarse
    std = float(fine.std())
    if std > 0:
        fine *= np.float32(1.0 / std)
    return fine


def build_pyramid(gray: np.ndarray, min_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Registration pyramid of one grey image.

    Args:
        gray: ``(H, W)`` float32 grey image in [0, 1] (at the working resolution).
        min_side: the coarsest level's shorter side stays at or above this (px).

    Returns:
        ``[(feature image, S_level<-0)]`` from the finest level (index 0) to the coarsest: each
        level halves the previous grey image (area average) and is band-passed on its own
        (:func:`feature_image`), so every level keeps the frequencies that level resolves.
        ``S_level<-0`` ``(3, 3)`` maps level-0 pixels to that level's pixels.
    """
    levels = [(gray.astype(np.float32, copy=False), np.eye(3))]
    while min(levels[-1][0].shape[:2]) // 2 >= min_side:
        prev, s_prev = levels[-1]
        h, w = prev.shape[:2]
        nw, nh = w // 2, h // 2
        small = cv2.resize(prev, (nw, nh), interpolation=cv2.INTER_AREA)
        levels.append((small, downscale_matrix(nw / w, nh / h) @ s_prev))
    return [(feature_image(img), s) for img, s in levels]


def project_similarity(t: np.ndarray, width: int, height: int) -> np.ndarray:
    """The similarity (scale, rotation, shift) nearest to an affine ``t`` over the image:
    the linear part is projected onto ``[[a, -b], [b, a]]`` and the shift is chosen so that the
    image centre maps where ``t`` maps it (least squares over the image's pixels)."""
    a, b = t[0, 0], t[0, 1]
    c, d = t[1, 0], t[1, 1]
    p, q = (a + d) / 2.0, (c - b) / 2.0
    lin = np.array([[p, -q], [q, p]])
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    shift = t[:2, :2] @ centre + t[:2, 2] - lin @ centre
    out = np.eye(3)
    out[:2, :2] = lin
    out[:2, 2] = shift
    return out


class PairResult:
    """One pairwise registration: ``transform`` ``(3, 3)`` maps the *moving* frame's pixels to
    the *fixed* frame's; ``correlation`` is ECC's final correlation coefficient (1 is perfect)."""

    __slots__ = ("transform", "correlation")

    def __init__(self, transform: np.ndarray, correlation: float) -> None:
        self.transform = transform
        self.correlation = correlation


def _phase_shift(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Translation guess (``(3, 3)``, moving -> fixed) from phase correlation."""
    win = cv2.createHanningWindow(fixed.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(moving.astype(np.float32), fixed.astype(np.float32), win)
    t = np.eye(3)
    if response > 0.05 and np.isfinite(dx) and np.isfinite(dy):
        t[0, 2], t[1, 2] = dx, dy
    return t


def register_pair(
    fixed: list[tuple[np.ndarray, np.ndarray]],
    moving: list[tuple[np.ndarray, np.ndarray]],
    model: str,
    *,
    iterations: int = 100,
    eps: float = 1e-6,
    names: tuple[str, str] = ("fixed", "moving"),
    min_level: int = 0,
) -> PairResult:
    """Register two pyramids (from :func:`build_pyramid` of :func:`feature_image`).

    Args:
        fixed, moving: pyramids of one size, finest level first.
        model: ``"similarity" | "affine" | "homography"``.
        iterations, eps: ECC's stopping criteria per level.
        names: file names for error messages (fixed, moving).
        min_level: the finest pyramid level registered (0: full size; 1 stops at half size,
            for a caller that refines the result itself).

    Returns:
        :class:`PairResult` whose transform maps *moving* level-0 pixels to *fixed* level-0 pixels.

    Raises:
        StackError: ECC did not converge (names both files and suggests ``--no-align``).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    motion = _ECC_MOTION[model]
    top = len(fixed) - 1
    min_level = max(0, min(min_level, top))
    f_top, s_top = fixed[top]
    m_top, _ = moving[top]
    # transform in level coordinates, moving -> fixed
    t = _phase_shift(f_top, m_top)
    rho = 0.0
    for level in range(top, min_level - 1, -1):
        f_img, s_l = fixed[level]
        m_img, _ = moving[level]
        if level != top:
            t = rescale_transform(t, fixed[level + 1][1] @ np.linalg.inv(s_l))  # coarse -> this level
        h, w = f_img.shape[:2]
        # ECC's warp maps template (fixed) coordinates to input (moving) coordinates.
        warp = np.linalg.inv(t)
        warp /= warp[2, 2]
        warp = (warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2]).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, eps)
        try:
            rho, warp = cv2.findTransformECC(f_img, m_img, warp, motion, crit, None, 1)
        except cv2.error as exc:
            if level > min_level:
                continue  # a coarse level that cannot improve the guess: refine at the next one
            raise StackError(
                f"alignment failed to converge for frame {names[1]} (registered against {names[0]})",
                expected="neighbouring frames that show the same scene, shifted or scaled a little",
                actual=f"OpenCV ECC stopped at pyramid level {level}: {str(exc).strip().splitlines()[-1][:160]}",
                fix="if the frames are already registered pass --no-align; otherwise check that this "
                "frame belongs to the stack" + ("" if model == "similarity" else ", or try --align-model similarity (the default: "
                "fewer parameters than " + model + ")"),
            ) from exc
        full = np.eye(3)
        full[: warp.shape[0]] = warp
        t = np.linalg.inv(full)
        t /= t[2, 2]
        if model == "similarity":
            t = project_similarity(t, w, h)
    if min_level > 0:  # back to level-0 pixels
        t = rescale_transform(t, fixed[min_level][1] @ np.linalg.inv(fixed[0][1]))
    return PairResult(t, float(rho))
