"""The decision map: pick, for every pixel, the frame that is in focus there, and copy it.

This is the *initial synthesis* of the transition-region paper (Liu et al., "Focus Stacking with
High Fidelity and Superior Visual Effects", Eq. 9, ``R_init = M f + (1 - M) b``) generalised
to ``K`` frames: ``R_init = sum_k M_k f_k`` with soft decision maps ``M_k >= 0``,
``sum_k M_k = 1``. Away from the boundaries between decisions one ``M_k`` is exactly 1, so the
output there *is* the source pixel, bit for bit (a 16-bit frame round-trips unchanged).

Pipeline (each step is a function below or in ``focusstack.ops``; :func:`decision_steps` chains them, and
``focusstack.engines.decision.DecisionEngine`` wraps the chain as an engine):

1. :func:`focus_measures` (``focusstack.ops.focus``): multi-scale log sum-modified-Laplacian
   of every frame's luminance, ``(K, H, W)``.
2. Aggregation and :func:`initial_decision`: each measure is Gaussian-smoothed (sigma
   ``aggregate`` of the shorter side), then the argmax over frames.
3. :func:`consistency_check`: the evidence is the spread of the measures, best minus *worst*
   (:func:`focus_evidence`): frames tied for sharpest are a decision between them, not a lack
   of evidence. Only where the windowed spread is below ``min_evidence`` (flat regions: every
   frame shows the same flat colour) does a pixel take the label of the nearest decided pixel.
   An evidence-weighted majority filter and small-region removal exist but are off by default.
4. :func:`refine_weights`: one-hot maps of the labels, guided-filtered (He et al. 2010) with the
   frames' mean luminance as guide inside a band around the label boundaries, so the soft
   boundary follows image edges; exact 0/1 outside the band.
5. :func:`decision_confidence`: per-pixel confidence in [0, 1] from the margin of the chosen
   frame over the best other frame, smoothed, and capped by the largest soft weight, so
   ``confidence == 1`` implies the output equals one source frame exactly.
6. :func:`compose`: ``sum_k M_k f_k``.

:func:`decision_steps` returns every intermediate map (for ``--save-steps`` style debugging).
All arrays are numpy ``float32`` (maps) or ``uint8`` (labels); filters are cv2 on single planes,
and at most a few ``(K, H, W)`` float32 stacks are alive at once (measures, then weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from focusstack.maps.halo import HaloPair, MatteSpec, halo_fill
from focusstack.maps.reblur import pair_seams, relabel_by_reblur
from focusstack.ops import GuidedFilter, compose, empty_plain, focus_measure, linear_luminance, luminance
from focusstack.ops.blend import ROWS, weighted_sum_box
from focusstack.ops.check import check_frames as _check_frames
from focusstack.progress import Advance

_BORDER = cv2.BORDER_REFLECT_101
#: Labels are uint8; 255 marks "undecided" inside :func:`consistency_check`.
_UNDECIDED = 255
MAX_DECISION_FRAMES = 254


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DecisionConfig:
    """Parameters of the decision engine. Sizes given as fractions scale with the image's
    shorter side (or area), with a floor in pixels, so one setting serves 0.1 to 16 Mpx."""

    #: Modified-Laplacian steps (px) of the focus measure, and its window at step 1 (px).
    scales: tuple[int, ...] = (1, 2, 4)
    window: int = 7
    #: Noise std (in [0, 1] units) under which detail counts as noise (focus measure floor).
    noise_sigma: float = 1.5 / 255.0
    #: Sigma of the Gaussian that aggregates each frame's focus measure before the argmax, as a
    #: fraction of the shorter side (at least 1 px): a pixel is decided by its neighbourhood.
    aggregate: float = 0.006
    #: Radius of the window over which the evidence (best minus *worst* measure, see
    #: :func:`focus_evidence`) is averaged, as a fraction of the shorter side.
    evidence_radius: float = 0.01
    #: Mean log energy ratio between the sharpest and the blurriest frame that a neighbourhood
    #: needs to keep its own decision; below it every frame shows the same flat colour and the
    #: pixel takes the nearest decided label. 0 disables the fill.
    min_evidence: float = 0.05
    #: Radius of an evidence-weighted majority filter (fraction of the shorter side); 0 = off.
    #: Off by default: on devbench it cost 0.2 dB (it erodes thin sharp structures).
    majority: float = 0.0
    #: Connected regions of one label smaller than this fraction of the image are reassigned;
    #: 0 = off. Off by default: frames tied for sharpest split a region into many small ones,
    #: and reassigning those handed sharp regions to a blurred neighbour (devbench: -1.9 dB).
    min_region: float = 0.0
    #: Largest image area (px) on which the focus measures and the decision are computed; a
    #: larger stack is measured on luminance downscaled to this area (area average) and its
    #: labels brought back to full size, where the guided filter shapes the boundaries. Defocus
    #: blur grows with resolution, so the decision does not need every pixel; the measures cost
    #: most of the time (4K: 7 frames in 15 s at full size). 0: always full size.
    work_pixels: int = 4_000_000
    #: Guided filter radius (fraction of the shorter side, at least 1 px) and regularisation.
    #: The floor was 2 px, which made a 224 px image's transitions twice as wide for its size
    #: as a 512 px one's: MF-VOC +0.38 dB at 1 px, devA and devTR unchanged (2 px there).
    guide_radius: float = 0.004
    guide_eps: float = 1e-3
    #: Energy ratio between the chosen frame and the best other one at which confidence is 1.
    confidence_ratio: float = 2.0
    #: Re-decide the band around every boundary of the map by the relative-blur test
    #: (:mod:`focusstack.maps.reblur`: the frame whose re-blurred copy explains the other is
    #: the sharp one), which keeps the rim of a near object that a focus measure hands to the
    #: far frame. devbench: devA +0.62 dB, band +0.75 (docs/decision.md).
    reblur: bool = True
    #: Sigma (px at the working size) of the Gaussian that aggregates the re-blur errors. 0.5 px
    #: (was 1): the test decides the pixels next to a silhouette, and a wider window lets the
    #: other side's errors decide them. devbench: MF-VOC +0.17 dB, devA +0.03, devTR +0.02;
    #: 0.35 and 0.25 px lose on all three (noise), 0.7 is between (docs/decision.md).
    reblur_window: float = 0.5
    #: Largest defocus radius fitted between two frames, as a fraction of the longer side.
    reblur_max_radius: float = 0.05
    #: Pairs of frames whose fitted defocus radius (px) is below this are left as decided.
    reblur_min_radius: float = 1.0
    #: Largest area (px) on which the re-blur test runs; a larger working size is tested on
    #: luminance downscaled to it, and only the labels it changes are brought back (4K: 20
    #: pairs of frames in 2 s instead of 10 s). 0: the working size.
    reblur_pixels: int = 1_000_000
    #: A pixel changes hands only where the losing re-blur error exceeds the winner's by this
    #: ratio and by this much (linear light, 0-1): in flat regions both errors are noise and
    #: keep their decision (on real JPEG pairs a bare comparison scattered labels over walls).
    #: devbench: +0.1 dB over no margin; undoing small changed regions instead cost 0.2-0.6 dB.
    reblur_margin: float = 0.2
    reblur_floor: float = 0.002
    #: Synthesise the background side of every occlusion boundary whose near/far order the
    #: un-compositing test decides (:mod:`focusstack.maps.halo`): the near frame's low
    #: frequencies plus the background un-composited from the far frame, where both frames
    #: are wrong (one blurred, one under the blurred object's spill). devbench (session 11):
    #: devTR +1.40 dB (band +1.97), devA +0.78 (band +1.21), MF-VOC unchanged (docs/decision.md,
    #: step 3c).
    halo: bool = True
    #: ... for pairs of frames whose defocus radius is at least this (px at the working size):
    #: a smaller halo is within the guided filter's transition.
    halo_min_radius: float = 3.0
    #: ... when one order's residual beats the other's by this log ratio (devTR: the 11 pairs
    #: decided are right; scene_007, 0.25, is left; 0.2 would decide it right but costs devA
    #: scene_012 2 dB with a wrong order, docs/quality.md) ...
    halo_order_margin: float = 0.3
    #: ... and un-compositing explains the near frame no worse than the far frame as it is
    #: (residual ratio at most this: a pair without spill, such as a blur pasted with a hard
    #: mask, is left). 0.98 until session 13; 1.0: devTR scene_001 (0.999) is filled, band
    #: 35.69 -> 37.23 dB, devTR +0.04, devA +0.03, MF-VOC unchanged (its pairs that pass are
    #: encoded-domain blurs, which the domain gate leaves).
    halo_max_spill_ratio: float = 1.0
    #: The near object's matte: its decision region eroded by this fraction of the radius (at
    #: least 1 px), then guided-filtered on the near frame's colours with this radius (x
    #: radius); and the background's detail that is kept, above a Gaussian of this sigma (x
    #: radius). devbench (session 10, grey guide), erosion 0.25 / 0.19 / 0.125 / 0.0625: devTR
    #: 42.95 / 43.10 / 43.32 / 43.43 dB, devA 40.97 / 41.10 / 41.25 / 41.23; guided radius 0.5
    #: and 1.5 lose on devA, as do detail sigmas 0.35 and 0.75 on both (session 11, pillbox of
    #: r / 1.09, grey guide: 0.35 / 0.75 / 1.0 give devTR 43.22 / 42.38 / 41.38, 0.5 43.46;
    #: docs/decision.md, step 3c).
    halo_matte_erode: float = 0.125
    halo_matte_radius: float = 1.0
    halo_detail_sigma: float = 0.5
    #: Largest grid (px) the order test and the smooth terms of the synthesis run on: the
    #: re-blur test's map, downscaled to it; the background is formed at full size at the
    #: pixels replaced (:func:`fill_halos`). 0: the re-blur test's grid. 0.4 Mpx holds a
    #: 768x512 stack (devbench) at full size. devbench upscaled 2.5x (1920x1280, with
    #: ``halo_max_pixels`` 0), against no synthesis: devTR 42.74 -> 43.82 dB (band 32.35 -> 33.82), devA 40.97 -> 41.50 (band
    #: 34.03 -> 34.88); on a 1 Mpx grid devTR 43.71, and 4096x2731 took 3 s longer, on this
    #: one as long as without the step (docs/decision.md step 3c).
    halo_pixels: int = 400_000
    #: Largest image (px) the synthesis runs on. On a real stack it leaves specks of colour
    #: where the model does not fit (pcb7, at 768 px as at full size: bright pins whose real
    #: PSF and focus breathing are not a pillbox of one radius; the check on the spill takes
    #: most, not all): until a per-pixel test removes them, it stays off above 1 Mpx, where
    #: real photos are (docs/decision.md step 3c). 0: no limit.
    halo_max_pixels: int = 1_000_000

    def __post_init__(self) -> None:
        if not self.scales or any(int(s) < 1 for s in self.scales):
            raise ValueError(f"scales must be a non-empty tuple of steps >= 1, got {self.scales}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.noise_sigma <= 0:
            raise ValueError(f"noise_sigma must be > 0, got {self.noise_sigma}")
        for name in ("aggregate", "evidence_radius", "majority", "min_region", "guide_radius"):
            v = getattr(self, name)
            if not 0.0 <= v < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {v}")
        if self.min_evidence < 0:
            raise ValueError(f"min_evidence must be >= 0, got {self.min_evidence}")
        if self.guide_eps <= 0:
            raise ValueError(f"guide_eps must be > 0, got {self.guide_eps}")
        if self.confidence_ratio <= 1.0:
            raise ValueError(f"confidence_ratio must be > 1, got {self.confidence_ratio}")
        if not self.reblur_window > 0:
            raise ValueError(f"reblur_window must be > 0 px, got {self.reblur_window}")
        if not 0.0 < self.reblur_max_radius < 0.5:
            raise ValueError(f"reblur_max_radius must be in (0, 0.5), got {self.reblur_max_radius}")
        if self.reblur_pixels < 0:
            raise ValueError(f"reblur_pixels must be >= 0 (0: the working size), got {self.reblur_pixels}")
        if self.reblur_margin < 0 or self.reblur_floor < 0:
            raise ValueError(f"reblur_margin and reblur_floor must be >= 0, got {self.reblur_margin}, {self.reblur_floor}")
        if min(self.halo_matte_erode, self.halo_matte_radius, self.halo_detail_sigma) <= 0:
            raise ValueError("halo_matte_erode, halo_matte_radius and halo_detail_sigma must be > 0, got "
                             f"{self.halo_matte_erode}, {self.halo_matte_radius}, {self.halo_detail_sigma}")
        if self.halo_min_radius < 1 or self.halo_order_margin < 0 or not 0 < self.halo_max_spill_ratio <= 1 \
                or min(self.halo_pixels, self.halo_max_pixels) < 0:
            raise ValueError(
                "halo_min_radius must be >= 1 px, halo_order_margin >= 0, halo_max_spill_ratio in (0, 1] and "
                f"halo_pixels, halo_max_pixels >= 0, got {self.halo_min_radius}, {self.halo_order_margin}, {self.halo_max_spill_ratio}, "
                f"{self.halo_pixels}, {self.halo_max_pixels}"
            )
        if self.reblur_min_radius < 0:
            raise ValueError(f"reblur_min_radius must be >= 0 px, got {self.reblur_min_radius}")

    def pixels(self, fraction: float, shape: tuple[int, int], floor: int) -> int:
        """A radius given as a fraction of the shorter side, in pixels (at least ``floor``)."""
        return max(floor, int(round(fraction * min(shape))))


# --------------------------------------------------------------------------------------------
# input checks


def check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a stack and return it as ``K x (H, W, 3)`` float32 (see
    :func:`focusstack.ops.check_frames`; at most 254 frames: labels are uint8)."""
    return _check_frames(frames, max_frames=MAX_DECISION_FRAMES, what="decision fusion")


def _check_stack(x: np.ndarray, name: str, ndim: int = 3) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != ndim:
        shape = getattr(x, "shape", None)
        want = "(K, H, W)" if ndim == 3 else "(H, W)"
        raise ValueError(f"{name} must be a {want} array, got shape {shape}")


# --------------------------------------------------------------------------------------------
# step 2: argmax and margin


def initial_decision(measures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(K, H, W)`` float32 focus measures -> ``(labels (H, W) uint8, margin (H, W) float32 >= 0)``.

    ``labels`` is the argmax over frames (the first frame on ties); ``margin`` is the best
    measure minus the second best (0 for ``K = 1``).
    """
    _check_stack(measures, "measures")
    k = measures.shape[0]
    if k > MAX_DECISION_FRAMES:
        raise ValueError(f"at most {MAX_DECISION_FRAMES} frames, got {k}")
    labels = np.zeros(measures.shape[1:], np.uint8)
    best = measures[0].copy()
    second = np.full(measures.shape[1:], -np.inf, np.float32)
    for i in range(1, k):
        m = measures[i]
        win = m > best
        np.maximum(second, np.where(win, best, m), out=second)
        np.copyto(best, m, where=win)
        labels[win] = i
    if k == 1:
        return labels, np.zeros(measures.shape[1:], np.float32)
    best -= second
    return labels, best


def focus_evidence(measures: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` float32 focus measures -> ``(H, W)`` float32 >= 0: best minus *worst*.

    This, not the margin over the second best, is the evidence that a pixel is decided. Where
    two frames are both sharp (neighbouring focus planes, a far background that several frames
    see sharp) the margin over the second best is near zero, yet the pixel is decided: either
    sharp frame is right, and what matters is that the chosen one stands above the frames that
    are clearly blurrier. Only where *every* frame measures the same (a flat region, where all
    frames show the same colour) is there no evidence. Measured on devbench devA: filling
    ties as undecided (margin over the second best) gave 32.6 dB, this gives 40.3 dB.
    """
    _check_stack(measures, "measures")
    return (measures.max(axis=0) - measures.min(axis=0)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# step 3: consistency check


def _nearest_fill(labels: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Give every pixel where ``known`` is False the label of the nearest known pixel."""
    if known.all() or not known.any():
        return labels
    src = np.where(known, 0, 1).astype(np.uint8)  # zero pixels are the seeds
    _, idx = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    seeds = labels[known]  # raster order, which is cv2's enumeration order of zero pixels
    return seeds[idx - 1].astype(np.uint8)


def majority_filter(labels: np.ndarray, num_labels: int, radius: int, weights: np.ndarray | None = None):
    """Weighted majority (mode) filter of a label map over a ``(2r+1)^2`` box.

    Returns ``(labels (H, W) uint8, net (H, W) float32)``: the label with the largest (weighted)
    share of the window, and its share minus the runner-up's (the window's net evidence).
    """
    _check_stack(labels, "labels", ndim=2)
    if radius < 1 or num_labels < 2:
        return labels.copy(), np.zeros(labels.shape, np.float32)
    size = (2 * radius + 1, 2 * radius + 1)
    best = np.full(labels.shape, -1.0, np.float32)
    second = np.full(labels.shape, -1.0, np.float32)
    out = np.zeros(labels.shape, np.uint8)
    for k in range(num_labels):
        hot = (labels == k).astype(np.float32)
        if weights is not None:
            hot *= weights
        v = cv2.boxFilter(hot, cv2.CV_32F, size, normalize=True, borderType=_BORDER)
        del hot
        win = v > best
        np.maximum(second, np.where(win, best, v), out=second)
        np.copyto(best, v, where=win)
        out[win] = k
    best -= second
    return out, best


def remove_small_regions(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Reassign every 4-connected region of one label smaller than ``min_area`` pixels to the
    nearest pixel of a region that is kept (its neighbours). If no region is large enough the
    largest one is kept."""
    _check_stack(labels, "labels", ndim=2)
    if min_area <= 1:
        return labels
    keep = np.zeros(labels.shape, bool)
    largest = (0, None, None)
    for k in np.unique(labels):
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == k).astype(np.uint8), connectivity=4)
        areas = stats[1:, cv2.CC_STAT_AREA]
        if areas.size == 0:
            continue
        big = np.concatenate([[False], areas >= min_area])
        keep |= big[comp]
        j = int(np.argmax(areas))
        if areas[j] > largest[0]:
            largest = (int(areas[j]), comp, j + 1)
        del comp
    if not keep.any():
        keep = largest[1] == largest[2]
    return _nearest_fill(labels, keep)


def consistency_check(
    labels: np.ndarray,
    evidence: np.ndarray,
    num_labels: int,
    *,
    radius: int = 0,
    min_evidence: float,
    min_area: int = 0,
    evidence_radius: int = 2,
) -> np.ndarray:
    """Clean a raw decision map. See the module docstring (step 3).

    Args:
        labels: ``(H, W)`` uint8 raw argmax labels.
        evidence: ``(H, W)`` float32 >= 0, the best-minus-worst focus spread
            (:func:`focus_evidence`).
        num_labels: number of frames ``K``.
        radius: evidence-weighted majority filter radius in pixels (0: none).
        min_evidence: mean evidence over a ``(2 evidence_radius + 1)^2`` window below which a
            pixel is filled from its nearest decided pixel (0: no fill).
        min_area: regions smaller than this (pixels) are reassigned (0: none).
        evidence_radius: radius (px) of the evidence window.

    Returns:
        ``(H, W)`` uint8 labels in ``[0, K)``.
    """
    _check_stack(labels, "labels", ndim=2)
    if evidence.shape != labels.shape:
        raise ValueError(f"evidence must match labels, got {evidence.shape} and {labels.shape}")
    if num_labels < 2:
        return np.zeros_like(labels)
    voted = labels
    if radius >= 1:
        voted, _ = majority_filter(labels, num_labels, radius, weights=evidence)
    if min_evidence > 0:
        r = max(0, int(evidence_radius))
        net = cv2.blur(evidence, (2 * r + 1, 2 * r + 1), borderType=_BORDER) if r else evidence
        voted = _nearest_fill(voted, net >= min_evidence)
        del net
    if min_area > 1:
        voted = remove_small_regions(voted, min_area)
    return voted


# --------------------------------------------------------------------------------------------
# step 4: boundary refinement


def label_boundary_band(labels: np.ndarray, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``width`` px of a boundary between two labels."""
    k3 = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(labels, k3, borderType=cv2.BORDER_REPLICATE) != cv2.erode(
        labels, k3, borderType=cv2.BORDER_REPLICATE
    )
    if width > 1 and edge.any():
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        edge = cv2.dilate(edge.astype(np.uint8), ker).astype(bool)
    return edge


@dataclass
class SoftBand:
    """The soft part of a decision map: within ``box`` (``(y0, y1, x0, x1)``), the pixels of
    ``mask`` (``(y1 - y0, x1 - x0)`` bool, in row-major order) have the weights ``soft``
    (``(K, n)`` float32, summing to 1 per pixel); every other pixel has the one-hot weight of
    its label."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    soft: np.ndarray


def soft_band(
    labels: np.ndarray, guide: np.ndarray, num_labels: int, *, radius: int, eps: float, subsample: int = 1
) -> SoftBand | None:
    """The guided-filtered one-hot maps of ``labels`` (``(H, W)`` uint8; ``guide`` ``(H, W)``
    float32) within ``2 * radius`` of a label boundary, clipped to [0, 1] and renormalised to
    sum 1 (see :class:`SoftBand`); None when there is no boundary (one-hot everywhere)."""
    _check_stack(labels, "labels", ndim=2)
    if guide.shape != labels.shape:
        raise ValueError(f"guide must match labels, got {guide.shape} and {labels.shape}")
    if num_labels < 2 or radius < 1:
        return None
    band = label_boundary_band(labels, 2 * radius)
    if not band.any():
        return None
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    # Filter only the band's bounding box (plus the filter's reach), not the whole image.
    pad = 2 * radius + 1
    y0, y1 = max(0, int(rows[0]) - pad), min(labels.shape[0], int(rows[-1]) + pad + 1)
    x0, x1 = max(0, int(cols[0]) - pad), min(labels.shape[1], int(cols[-1]) + pad + 1)
    gf = GuidedFilter(guide[y0:y1, x0:x1], radius, eps, subsample)
    sub_labels = labels[y0:y1, x0:x1]
    sub_band = band[y0:y1, x0:x1]
    soft = np.zeros((num_labels, int(sub_band.sum())), np.float32)
    present = np.unique(labels[band])  # a label absent from the band filters to 0 there
    # one-hot plane and filtered plane: two buffers for every label (fresh full-size pages per
    # label cost about 0.1 s each at 4096x2731)
    hot = np.empty(sub_labels.shape, bool)
    plane = np.empty(sub_labels.shape, np.float32)
    q = np.empty(sub_labels.shape, np.float32)
    for k in present:
        np.equal(sub_labels, k, out=hot)
        np.copyto(plane, hot)
        gf(plane, out=q)
        soft[k] = q[sub_band]
    del hot, plane, q
    np.clip(soft, 0.0, 1.0, out=soft)
    total = soft.sum(axis=0)
    soft[:, total <= 0] = 1.0 / num_labels  # cannot happen for one-hot input; guard anyway
    soft /= np.maximum(total, np.float32(1e-12))
    # A weight within float noise of 1 becomes an exact one-hot (so the pixel is copied).
    near_one = soft.max(axis=0) >= 1.0 - 1e-6
    if near_one.any():
        winner = soft[:, near_one].argmax(axis=0)
        hot = np.zeros((num_labels, winner.size), np.float32)
        hot[winner, np.arange(winner.size)] = 1.0
        soft[:, near_one] = hot
    return SoftBand((y0, y1, x0, x1), sub_band, soft)


def refine_weights(
    labels: np.ndarray, guide: np.ndarray, num_labels: int, *, radius: int, eps: float, subsample: int = 1
) -> np.ndarray:
    """Soft decision maps ``(K, H, W)`` float32: exact one-hot of ``labels`` except within
    ``2 * radius`` of a label boundary, where the guided-filtered one-hot maps (clipped to
    [0, 1], renormalised to sum 1) are used (:func:`soft_band`). Weights sum to 1 at every pixel."""
    band = soft_band(labels, guide, num_labels, radius=radius, eps=eps, subsample=subsample)
    return dense_weights(labels, num_labels, band)


def dense_weights(labels: np.ndarray, num_labels: int, band: SoftBand | None) -> np.ndarray:
    """``(K, H, W)`` float32 weights of a decision map given as labels plus its soft band."""
    weights = np.zeros((num_labels, *labels.shape), np.float32)
    for k in range(num_labels):
        weights[k][labels == k] = 1.0
    if band is not None:
        y0, y1, x0, x1 = band.box
        for k in range(num_labels):
            weights[k, y0:y1, x0:x1][band.mask] = band.soft[k]
    return weights


def compose_band(frames: Sequence[np.ndarray], labels: np.ndarray, band: SoftBand | None) -> np.ndarray:
    """``sum_k M_k f_k`` for weights given as ``labels`` plus a :class:`SoftBand`, without the
    ``(K, H, W)`` weights: ``K x (H, W, 3)`` float32 -> ``(H, W, 3)`` float32 in [0, 1]. The same
    float32 sums, bit for bit, as :func:`focusstack.ops.compose` of :func:`dense_weights`
    (4096x2731, 7 frames: 1.1 s -> 0.3 s, and 0.3 GB less)."""
    h, w = labels.shape
    out = empty_plain((h, w, 3), np.float32)  # written once, streamed to the writer
    for k, f in enumerate(frames):
        hot = labels == k
        if hot.any():
            cv2.copyTo(np.ascontiguousarray(f, np.float32), hot.view(np.uint8), out)
    if band is not None:
        # the weighted sum in boxes of ROWS rows of the band's box: the weights of a box are
        # a contiguous run of band.soft (row-major), spread into a small dense block
        y0, y1, x0, x1 = band.box
        k = band.soft.shape[0]
        starts = np.concatenate([[0], np.cumsum(band.mask.sum(axis=1))])
        for r0 in range(0, y1 - y0, ROWS):
            r1 = min(y1 - y0, r0 + ROWS)
            a, b = int(starts[r0]), int(starts[r1])
            if a == b:
                continue
            sub = band.mask[r0:r1]
            planes: list[np.ndarray | None] = []
            for i in range(k):
                seg = band.soft[i, a:b]
                plane = None
                if seg.any():
                    plane = np.zeros(sub.shape, np.float32)
                    plane[sub] = seg
                planes.append(plane)
            weighted_sum_box(frames, planes, out, (y0 + r0, y0 + r1, x0, x1), sub)
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------------------------
# step 5: confidence


def decision_confidence(
    measures: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    ratio: float = 2.0,
    radius: int = 2,
) -> np.ndarray:
    """Per-pixel confidence ``(H, W)`` float32 in [0, 1].

    ``(F[label] - max_{j != label} F[j]) / log(ratio)``, box-smoothed over ``2r+1`` and clipped
    to [0, 1]: 0 where the chosen frame is not better than another (ties, flat regions, pixels
    the consistency check overruled), 1 where its detail energy is at least ``ratio`` times
    every other frame's. With ``weights`` it is capped by the largest soft weight, so a
    confidence of exactly 1 implies the fused pixel is an exact copy of one frame.
    """
    _check_stack(measures, "measures")
    if labels.shape != measures.shape[1:]:
        raise ValueError(f"labels must be {measures.shape[1:]}, got {labels.shape}")
    k = measures.shape[0]
    if k == 1:
        conf = np.ones(labels.shape, np.float32)
    else:
        chosen = np.take_along_axis(measures, labels[None].astype(np.intp), axis=0)[0]
        other = np.full(labels.shape, -np.inf, np.float32)
        for i in range(k):
            np.maximum(other, np.where(labels == i, -np.inf, measures[i]), out=other)
        chosen -= other
        chosen *= np.float32(1.0 / math.log(ratio))
        if radius >= 1:
            chosen = cv2.boxFilter(chosen, cv2.CV_32F, (2 * radius + 1,) * 2, normalize=True, borderType=_BORDER)
        conf = np.clip(chosen, 0.0, 1.0, out=chosen)
    if weights is not None:
        np.minimum(conf, weights.max(axis=0), out=conf)
    return conf


# --------------------------------------------------------------------------------------------
# step 6: composition


# --------------------------------------------------------------------------------------------
# the whole pipeline


@dataclass
class DecisionSteps:
    """Every intermediate map of one decision fusion (for debugging and the hybrid engine).

    ``measures`` ``(K, H, W)`` float32 focus measures; ``raw_labels`` ``(H, W)`` uint8 argmax;
    ``margin`` ``(H, W)`` float32 best-minus-second measure; ``labels`` ``(H, W)`` uint8 after
    the consistency check; ``weights`` ``(K, H, W)`` float32 soft maps summing to 1;
    ``confidence`` ``(H, W)`` float32 in [0, 1]; ``guide`` ``(H, W)`` mean luminance;
    ``fused`` ``(H, W, 3)`` float32 in [0, 1].
    """

    measures: np.ndarray
    raw_labels: np.ndarray
    margin: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    confidence: np.ndarray
    guide: np.ndarray
    fused: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    #: ``K x (H, W)`` float32 Rec. 709 luminance of each frame at full size, computed once here
    #: and handed to the layers above (ordering, agreement), which would otherwise redo it.
    lumas: list[np.ndarray] = field(default_factory=list)

    def visualise(self) -> dict[str, np.ndarray]:
        """uint8 images for saving: label maps spread over 0..255, weights of frame 0, confidence."""
        k = self.measures.shape[0]
        scale = 255 // max(1, k - 1)
        return {
            "raw_labels": (self.raw_labels.astype(np.uint16) * scale).clip(0, 255).astype(np.uint8),
            "labels": (self.labels.astype(np.uint16) * scale).clip(0, 255).astype(np.uint8),
            "weight0": np.round(self.weights[0] * 255).astype(np.uint8),
            "confidence": np.round(self.confidence * 255).astype(np.uint8),
        }


def fill_halos(
    frames: Sequence[np.ndarray], labels: np.ndarray, pair_weight, pairs: Sequence[dict],  # noqa: ANN001
    config: DecisionConfig, fused: np.ndarray,
) -> list[HaloPair]:
    """Synthesise the background side of each pair's occlusion boundary in ``fused`` (in place;
    :mod:`focusstack.maps.halo`), for the re-blur test's ``pairs`` (``{"frames", "radius_px",
    "domain"}``, radii in px of ``labels``).

    Args:
        frames: ``K x (H, W, 3)`` float32 in [0, 1].
        labels: ``(h, w)`` uint8, the map at the size the re-blur test ran: the frames' size,
            or smaller (``DecisionConfig.reblur_pixels``). Smaller, the order test and the
            smooth terms run on the frames' crops downscaled to it, and the background is
            formed at full size (:func:`focusstack.maps.halo.halo_fill`).
        pair_weight: ``(i, j, (y0, y1, x0, x1)) -> (h, w)`` float32, the summed weight of
            frames ``i`` and ``j`` in that box of ``fused`` (full size).
        fused: ``(H, W, 3)`` float32 in [0, 1], changed in place.

    Returns:
        One :class:`HaloPair` per pair tested, filled or not (``reason``; radii in px of
        ``labels``).
    """
    h, w = labels.shape
    fh, fw = frames[0].shape[:2]
    sy, sx = fh / h, fw / w
    downscaled = (h, w) != (fh, fw)
    cache: dict[int, np.ndarray] = {}

    def small(k: int) -> np.ndarray:  # each frame on the labels' grid, made once when a pair needs it
        if k not in cache:
            cache[k] = cv2.resize(frames[k], (w, h), interpolation=cv2.INTER_AREA)
        return cache[k]

    seams = pair_seams(labels)
    out: list[HaloPair] = []
    for p in pairs:
        i, j = (int(v) for v in p["frames"])
        r = float(p["radius_px"])
        if p.get("domain", "linear") != "linear":
            out.append(HaloPair((i, j), r, reason="blur of encoded values (no optical halo)"))
            continue
        if r < config.halo_min_radius:
            out.append(HaloPair((i, j), r, reason="radius below halo_min_radius"))
            continue
        seam = seams.get((min(i, j), max(i, j)))
        if seam is None:
            out.append(HaloPair((i, j), r, reason="no shared boundary"))
            continue
        ys, xs = np.nonzero(seam)
        pad = int(math.ceil(6 * r)) + 11  # everything the zone's values depend on
        y0, y1 = max(0, int(ys.min()) - pad), min(h, int(ys.max()) + pad + 1)
        x0, x1 = max(0, int(xs.min()) - pad), min(w, int(xs.max()) + pad + 1)
        lab = labels[y0:y1, x0:x1]
        if not downscaled:
            box = (y0, y1, x0, x1)
            pair = (np.ascontiguousarray(frames[i][y0:y1, x0:x1]), np.ascontiguousarray(frames[j][y0:y1, x0:x1]))
            full = None
        else:  # the box on the labels' grid, and the same box at full size (views)
            box = (int(round(y0 * sy)), min(fh, int(round(y1 * sy))), int(round(x0 * sx)), min(fw, int(round(x1 * sx))))
            full = tuple(frames[k][box[0]:box[1], box[2]:box[3]] for k in (i, j))
            pair = tuple(np.ascontiguousarray(small(k)[y0:y1, x0:x1]) for k in (i, j))
        mask, values, near, ratio, spill = halo_fill(
            pair, (lab == i, lab == j), seam[y0:y1, x0:x1], r,
            lambda: pair_weight(i, j, box), margin=config.halo_order_margin, max_spill_ratio=config.halo_max_spill_ratio,
            matte=MatteSpec(config.halo_matte_erode, config.halo_matte_radius), detail_sigma=config.halo_detail_sigma,
            full=full,
        )
        if mask is None:
            why = "order undecided" if near is None and abs(ratio) < config.halo_order_margin else "no spill to remove"
            out.append(HaloPair((i, j), r, None, ratio, spill, reason=why if ratio or spill != 1.0 else "too few pixels"))
            continue
        fused[box[0]:box[1], box[2]:box[3]][mask] = values
        out.append(HaloPair((i, j), r, (i, j)[near], ratio, spill, int(mask.sum())))
    return out


def _band_pair_weight(labels: np.ndarray, band: SoftBand | None):  # noqa: ANN202
    """The :func:`fill_halos` ``pair_weight`` of a map given as labels plus its soft band."""

    def weight(i: int, j: int, box: tuple[int, int, int, int]) -> np.ndarray:
        y0, y1, x0, x1 = box
        lab = labels[y0:y1, x0:x1]
        wij = ((lab == i) | (lab == j)).astype(np.float32)
        if band is not None:  # the soft pixels, where the band's box meets this one
            by0, by1, bx0, bx1 = band.box
            iy0, iy1, ix0, ix1 = max(y0, by0), min(y1, by1), max(x0, bx0), min(x1, bx1)
            if iy0 < iy1 and ix0 < ix1:
                dense = np.zeros(band.mask.shape, np.float32)
                dense[band.mask] = band.soft[i] + band.soft[j]
                src = np.s_[iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0]
                dst = wij[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
                dst[band.mask[src]] = dense[src][band.mask[src]]
        return wij

    return weight


def _run(
    frames: Sequence[np.ndarray],
    config: DecisionConfig,
    on_tile: Advance | None,
    keep_steps: bool,
    want_confidence: bool = True,
) -> tuple[np.ndarray, DecisionSteps | None, np.ndarray | None]:
    frames = check_frames(frames)
    k = len(frames)
    h, w = frames[0].shape[:2]
    total = k + 3
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_tile is not None:
            on_tile(done, total)

    # 1. focus measures (at the working size) and the guide (mean luminance, full size).
    scale = 1.0
    if config.work_pixels and h * w > config.work_pixels:
        scale = math.sqrt(config.work_pixels / (h * w))
    mh, mw = (max(8, int(round(h * scale))), max(8, int(round(w * scale)))) if scale < 1.0 else (h, w)
    measures = np.empty((k, mh, mw), np.float32)
    guide = np.zeros((h, w), np.float32)
    lumas: list[np.ndarray] = []  # linear light at the re-blur size, for the re-blur test
    encoded: list[np.ndarray] = []  # the same, sRGB-encoded (the test picks the domain per pair)
    rscale = 1.0
    if config.reblur_pixels and mh * mw > config.reblur_pixels:
        rscale = math.sqrt(config.reblur_pixels / (mh * mw))
    rsize = (max(8, int(round(mw * rscale))), max(8, int(round(mh * rscale))))
    full_lumas: list[np.ndarray] = []  # kept only with the steps
    # a full-size plane that is downscaled and dropped: one buffer for every frame
    buf = np.empty((h, w), np.float32) if scale < 1.0 and not keep_steps else None
    for i, f in enumerate(frames):
        y = luminance(f, out=buf)
        guide += y
        if keep_steps:
            full_lumas.append(y)
        if scale < 1.0:
            y = cv2.resize(y, (mw, mh), interpolation=cv2.INTER_AREA)
        measures[i] = focus_measure(y, scales=config.scales, window=config.window, noise_sigma=config.noise_sigma)
        if config.reblur and k > 1:
            yr = y if rscale == 1.0 else cv2.resize(y, rsize, interpolation=cv2.INTER_AREA)
            encoded.append(yr)
            lumas.append(linear_luminance(yr))
        del y
        tick()
    del buf
    guide *= np.float32(1.0 / k)

    # 2-3. aggregation, decision and consistency.
    agg = max(1.0, config.aggregate * min(mh, mw)) if config.aggregate > 0 else 0.0
    if agg:
        for i in range(k):
            measures[i] = cv2.GaussianBlur(measures[i], (0, 0), agg, borderType=_BORDER)
    raw_labels, margin = initial_decision(measures)
    evidence = focus_evidence(measures)
    labels = consistency_check(
        raw_labels,
        evidence,
        k,
        radius=config.pixels(config.majority, (mh, mw), 2) if config.majority > 0 else 0,
        min_evidence=config.min_evidence,
        min_area=int(round(config.min_region * mh * mw)),
        evidence_radius=config.pixels(config.evidence_radius, (mh, mw), 2),
    )
    del evidence
    reblur_pairs: list[dict] = []
    reblur_labels = labels  # the map at the re-blur size (the halo synthesis' grid)
    if lumas:
        small = labels if rscale == 1.0 else cv2.resize(labels, rsize, interpolation=cv2.INTER_NEAREST)
        relabelled, reblur_pairs = relabel_by_reblur(
            lumas, small, window=config.reblur_window, max_radius=config.reblur_max_radius * max(rsize),
            min_radius=config.reblur_min_radius, margin=config.reblur_margin, floor=config.reblur_floor,
            encoded=encoded,
        )
        reblur_labels = relabelled
        if rscale == 1.0:
            labels = relabelled
        else:  # only what the test changed comes back to the working size
            changed = cv2.resize((relabelled != small).astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST) > 0
            labels = np.where(changed, cv2.resize(relabelled, (mw, mh), interpolation=cv2.INTER_NEAREST), labels)
        del lumas, encoded
    small_labels = labels
    if scale < 1.0:  # back to full size (the guided filter shapes the boundaries there)
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    tick()

    # 4. soft boundaries.
    gr = config.pixels(config.guide_radius, (h, w), 1)
    sub = max(1, int(round(1.0 / scale))) if scale < 1.0 else 1
    band = soft_band(labels, guide, k, radius=gr, eps=config.guide_eps, subsample=sub)
    tick()
    # the halo synthesis: on the re-blur test's grid, the background at full size
    halos = config.halo and bool(reblur_pairs) and (not config.halo_max_pixels or h * w <= config.halo_max_pixels)
    halo_labels, halo_pairs_in = reblur_labels, reblur_pairs
    if halos and config.halo_pixels and reblur_labels.size > config.halo_pixels:
        hs = math.sqrt(config.halo_pixels / reblur_labels.size)
        hsz = (max(8, int(round(reblur_labels.shape[1] * hs))), max(8, int(round(reblur_labels.shape[0] * hs))))
        halo_labels = cv2.resize(reblur_labels, hsz, interpolation=cv2.INTER_NEAREST)
        halo_pairs_in = [dict(p, radius_px=float(p["radius_px"]) * hsz[0] / reblur_labels.shape[1]) for p in reblur_pairs]
    if not keep_steps and not want_confidence:  # labels plus the soft band: no (K, H, W) weights
        fused = compose_band(frames, labels, band)
        if halos:
            fill_halos(frames, halo_labels, _band_pair_weight(labels, band), halo_pairs_in, config, fused)
        tick()
        return fused, None, None
    weights = dense_weights(labels, k, band)
    del band

    # 5. confidence (needs the measures; freed afterwards unless steps are kept).
    if scale < 1.0:  # the confidence at the working size, brought to full size, capped by the weights
        conf_small = decision_confidence(measures, small_labels, None, ratio=config.confidence_ratio, radius=2)
        confidence = np.minimum(cv2.resize(conf_small, (w, h), interpolation=cv2.INTER_LINEAR), weights.max(axis=0))
        if keep_steps:  # every map of the steps at full size
            measures = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in measures])
            raw_labels = cv2.resize(raw_labels, (w, h), interpolation=cv2.INTER_NEAREST)
            margin = cv2.resize(margin, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        confidence = decision_confidence(measures, labels, weights, ratio=config.confidence_ratio, radius=2)

    # 6. compose, and the background side of the occlusion boundaries.
    fused = compose(frames, weights)
    halo_pairs: list[HaloPair] = []
    if halos:
        halo_pairs = fill_halos(frames, halo_labels, lambda i, j, b: weights[i, b[0]:b[1], b[2]:b[3]] + weights[j, b[0]:b[1], b[2]:b[3]],
                                halo_pairs_in, config, fused)
    tick()
    steps = None
    if keep_steps:
        steps = DecisionSteps(
            measures=measures,
            raw_labels=raw_labels,
            margin=margin,
            labels=labels,
            weights=weights,
            confidence=confidence,
            guide=guide,
            fused=fused,
            params={"guide_radius_px": gr, "aggregate_sigma_px": round(float(agg), 3), "reblur_pairs": reblur_pairs,
                    "halo_pairs": [hp.to_dict() for hp in halo_pairs]},
            lumas=full_lumas,
        )
    return fused, steps, confidence


def decision_fuse(
    frames: Sequence[np.ndarray], config: DecisionConfig = DecisionConfig(), *, on_tile: Advance | None = None
) -> np.ndarray:
    """``K x (H, W, 3)`` float32 in [0, 1] -> ``(H, W, 3)`` float32 in [0, 1] (``R_init``)."""
    fused, _, _ = _run(frames, config, on_tile, keep_steps=False, want_confidence=False)
    return fused


def decision_fuse_with_confidence(
    frames: Sequence[np.ndarray], config: DecisionConfig = DecisionConfig(), *, on_tile: Advance | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(fused (H, W, 3) float32 in [0, 1], confidence (H, W) float32 in [0, 1])``."""
    fused, _, conf = _run(frames, config, on_tile, keep_steps=False)
    return fused, conf


def decision_steps(
    frames: Sequence[np.ndarray], config: DecisionConfig = DecisionConfig(), *, on_tile: Advance | None = None
) -> DecisionSteps:
    """Run the pipeline and return every intermediate map (see :class:`DecisionSteps`)."""
    _, steps, _ = _run(frames, config, on_tile, keep_steps=True)
    assert steps is not None
    return steps
