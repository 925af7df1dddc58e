"""The background side of an occlusion boundary: which frame is the near one, and the background
that neither frame shows.

Image formation (layered thin lens, occlusion-correct): where a near object with matte ``a``
and colours ``F`` stands before a background ``B``, the frame focused near shows
``N = a F + (1 - a) (K * B)`` and the frame focused far shows ``D = K * (a F) + (1 - K * a) B``
(``K`` the defocus PSF of radius ``r``). On the background side of the silhouette, within
``r`` of it, neither is the truth ``B``: the near frame has it blurred, the far frame has it
under the blurred object's spill. Both are known, so the background can be *un-composited*
from the far frame: ``B = (D - K * (a N)) / (1 - K * a)`` (``a N = a F``).

**Which side is near** (:func:`order_pair`). For each of the two hypotheses ("frame i is the
near one", "frame j is"), un-composite the background as above and re-blur it: under the true
hypothesis the result explains the near frame on the background side (``N = K * B`` there).
The hypothesis with the smaller residual wins; it must win by ``margin`` (log ratio), and
un-compositing must explain the near frame better than the far frame as it is (a spill must
be there to remove: a pair blurred and pasted with a hard mask, as MF-VOC is, has none).
Measured (docs/decision.md): right on 12 of 12 devTR pairs, where the occlusion cue of
:mod:`focusstack.refinement.ordering` got 9.

**The synthesis** (:func:`halo_fill`). On the background side of an ordered pair the output
becomes the near frame's low frequencies plus the un-composited background's detail,
``N + (B - G * B)`` (``G`` a Gaussian of sigma ``r / 2``): this tolerates a matte that is a
few pixels off, where the full un-compositing does not. On the object's side of the matte, the
pixels that the decision gave the far frame take the near frame (the far frame's rim there is
the object blurred with the background seen through it). It is left out where the spill
estimate takes more light than the far frame has, and each value stays within
``_RANGE_SLACK`` of the two frames' range at its pixel: where the model does not hold (real
lenses), un-compositing runs off, and on a real stack (pcb7) it still leaves specks, so
``DecisionConfig.halo_max_pixels`` keeps it off real photos for now.

Arrays: frames ``(H, W, 3)`` float32 sRGB-encoded in [0, 1] (converted to linear light inside),
labels ``(H, W)`` uint8, radii in pixels of these arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from focusstack.maps.reblur import pillbox_radius
from focusstack.ops import color_guided_filter, linear_to_srgb, luminance, srgb_to_linear

__all__ = ["HaloPair", "MatteSpec", "halo_fill", "order_pair"]

_BORDER = cv2.BORDER_REFLECT_101
#: The matte's guided filter runs subsampled (He and Sun's fast guided filter) by its radius
#: over this, so that the radius stays at least this many px at the small size: about a quarter
#: of the cost, and smoother coefficients. On devbench (subsampled to 2 / 3 / 4 px / not):
#: devTR 43.95 / 43.88 / 43.84 / 43.78 dB, devA 41.54 / 41.55 / 41.47 / 41.45 (session 11,
#: which took 3 to keep devTR scene_003, radius 5, at full size); with the refined matte
#: (session 12) 2 / 3: devTR 44.12 / 44.05, devA 41.68 / 41.68, scene_003 43.95 / 43.96.
_MATTE_MIN_SMALL_RADIUS = 2


def _disc(r: float) -> np.ndarray:
    """A pillbox of radius ``r`` px with an antialiased rim, summing to 1."""
    n = int(math.ceil(r))
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0).astype(np.float32)
    return k / k.sum()


def _blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(x, -1, kernel, borderType=_BORDER)


def _ellipse(n: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * n + 1, 2 * n + 1))


@dataclass
class _Side:
    """One hypothesis on a crop: ``near`` is the near frame; its matte, the spill terms and the
    background-side residual of the re-blurred un-composited background (and of the far frame
    as it is)."""

    matte: np.ndarray  # (h, w) float32 in [0, 1], the near object's soft matte
    residual: float | None  # mean |N - K * B_uncomposited| over the background side
    plain: Callable[[], float] | None = None  # the same with the far frame as it is (no spill removed)
    kernel: np.ndarray | None = None  # the pillbox of the pair's radius
    near_seam: np.ndarray | None = None  # (h, w) bool, within 2 r + 2 px of the seam
    zone: np.ndarray | None = None  # (h, w) bool, the background side where the residual is taken


@dataclass(frozen=True)
class MatteSpec:
    """How the near object's matte is made from its decision region: eroded by ``erode`` x
    radius (at least 1 px: the region reaches a little into the halo), then guided-filtered on
    the near frame's colours with ``radius`` x radius (``DecisionConfig.halo_matte_erode`` and
    ``halo_matte_radius``). The colour guide (was its luminance) follows silhouettes whose two
    sides differ in hue more than in brightness (skin before foliage): devTR +0.32 dB, band
    +0.48; devA +0.12, band +0.22 (docs/decision.md step 3c).

    The winner's matte is then refined locally (:func:`_refine_matte`): ``refine_levels``
    erosions from ``erode`` to ``refine_erode`` x radius are tried, and where a deeper one
    explains the near frame's background side better by ``refine_gain`` (relative), within a
    window of sigma radius, it is taken, except where the near frame holds detail above
    ``refine_max_detail`` (sum over the channels of the local mean absolute high-pass, sRGB):
    a background blurred by the radius has none, a textured object does."""

    erode: float = 0.125
    radius: float = 1.0
    refine_erode: float = 0.5
    refine_levels: int = 3
    refine_gain: float = 0.15
    refine_max_detail: float = 0.25

    def __post_init__(self) -> None:
        if min(self.erode, self.radius) <= 0 or self.refine_erode < self.erode or self.refine_levels < 1 \
                or self.refine_gain < 0 or self.refine_max_detail <= 0:
            raise ValueError(
                "MatteSpec needs erode, radius > 0, refine_erode >= erode, refine_levels >= 1, refine_gain >= 0 "
                f"and refine_max_detail > 0, got {self.erode}, {self.radius}, {self.refine_erode}, "
                f"{self.refine_levels}, {self.refine_gain}, {self.refine_max_detail}")


def _matte(near_guide: np.ndarray, region: np.ndarray, r: float, erode_px: int, spec: MatteSpec) -> np.ndarray:
    """``(h, w)`` float32 in [0, 1]: ``region`` eroded by ``erode_px``, guided-filtered on the
    near frame's colours (``near_guide`` sRGB-encoded) with radius ``spec.radius`` x ``r``."""
    core = cv2.erode(region.astype(np.uint8), _ellipse(erode_px)).astype(np.float32)
    gr = max(1, int(round(spec.radius * r)))
    return np.clip(color_guided_filter(near_guide, core, gr, 1e-3, max(1, gr // _MATTE_MIN_SMALL_RADIUS)), 0.0, 1.0)


def _reblur_error(near_lin: np.ndarray, far_lin: np.ndarray, matte: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32: ``|N - K * B|`` (summed over the channels of ``(h, w, 3)`` frames;
    ``(h, w)`` planes also do), ``B`` the background un-composited from the far frame under
    ``matte`` and re-blurred over the background side only (the near frame's model there)."""
    c = (lambda x: x[..., None]) if near_lin.ndim == 3 else (lambda x: x)  # noqa: E731
    k_a = _blur(matte, kernel)
    bg = _uncomposite(far_lin, _blur(near_lin * c(matte), kernel), c(k_a))
    w = 1.0 - matte
    pred = _blur(bg * c(w), kernel) / c(np.maximum(_blur(w, kernel), 1e-3))
    e = np.abs(near_lin - pred)
    return e.sum(axis=2) if e.ndim == 3 else e


def _side(near_lin: np.ndarray, far_lin: np.ndarray, near_guide: np.ndarray, region: np.ndarray,
          near_seam: np.ndarray, r: float, kernel: np.ndarray, spec: MatteSpec) -> _Side:
    matte = _matte(near_guide, region, r, max(1, int(round(spec.erode * r))), spec)
    zone = (matte < 0.5) & (_blur(matte, kernel) > 0.05) & near_seam
    if int(zone.sum()) < 50:
        return _Side(matte, None, kernel=kernel, near_seam=near_seam)
    err = _reblur_error(near_lin, far_lin, matte, kernel)
    # the far frame as it is, as the background (no spill removed): the winner's only
    w = 1.0 - matte
    den = np.maximum(_blur(w, kernel), 1e-3)[..., None]
    plain = lambda: float(np.abs(near_lin - _blur(far_lin * w[..., None], kernel) / den).sum(axis=2)[zone].mean())  # noqa: E731
    return _Side(matte, float(err[zone].mean()), plain, kernel, near_seam, zone)


def _refine_matte(side: _Side, near_lin: np.ndarray, far_lin: np.ndarray, near_guide: np.ndarray,
                  region: np.ndarray, r: float, spec: MatteSpec) -> np.ndarray:
    """The winner's matte, made tighter where the imaging model asks for it.

    The region the decision gives the near frame reaches into the halo (the re-blur test hands
    the near frame the background side, where it beats the far frame's spill), so a matte
    eroded by ``r / 8`` overshoots the silhouette by up to ``r`` (devTR, against the GT mask:
    27 000 background pixels within ``r`` of the silhouette taken as object, 1 600 object
    pixels taken as background). Each deeper erosion gives another matte; on the background
    side of the first one (pixels every candidate calls background) each is scored by how well
    its un-composited, re-blurred background explains the near frame there, smoothed along the
    boundary. A deeper erosion is kept where it wins by ``spec.refine_gain`` and the near frame
    has no sharp detail (a false background over a textured object costs more than a halo
    left: the synthesis writes background over it). devTR +0.10 dB (band +0.16; scene_003
    43.66 -> 43.94), devA +0.03 (docs/decision.md step 3c).

    Returns ``(h, w)`` float32 in [0, 1].
    """
    base, kernel, zone = side.matte, side.kernel, side.zone
    steps = sorted({max(1, int(round(f * r))) for f in np.linspace(spec.erode, spec.refine_erode, max(1, spec.refine_levels))})
    first = max(1, int(round(spec.erode * r)))
    steps = [e for e in steps if e > first]
    if not steps or zone is None:
        return base
    sigma = max(1.0, r)
    zw = cv2.GaussianBlur(zone.astype(np.float32), (0, 0), sigma, borderType=_BORDER)

    def local(err: np.ndarray) -> np.ndarray:  # the error on the common zone, smoothed
        return cv2.GaussianBlur(err * zone, (0, 0), sigma, borderType=_BORDER) / np.maximum(zw, 1e-6)

    mattes = [base] + [_matte(near_guide, region, r, e, spec) for e in steps]
    # on the luminance of linear light: a third of the colour frames' cost, the same choices
    # (devTR 44.05 dB either way)
    yn, yf = luminance(near_lin), luminance(far_lin)
    errs = np.stack([local(_reblur_error(yn, yf, m, kernel)) for m in mattes])
    best = np.argmin(errs, axis=0)
    gain = errs[0] - np.take_along_axis(errs, best[None], 0)[0]
    detail = np.abs(near_guide - cv2.GaussianBlur(near_guide, (0, 0), max(1.0, r / 4), borderType=_BORDER)).sum(axis=2)
    detail = cv2.GaussianBlur(detail, (0, 0), 1.0, borderType=_BORDER)
    ok = (zw > 0.05) & (gain > spec.refine_gain * errs[0]) & (detail < spec.refine_max_detail)
    best = np.where(ok, best, 0)
    return np.take_along_axis(np.stack(mattes), best[None], 0)[0]


@dataclass(frozen=True)
class HaloPair:
    """The verdict on one pair of labels: ``near``/``far`` frames (None: undecided), the radius,
    the log ratio of the two hypotheses' residuals (> 0: ``frames[0]`` near), the spill ratio
    (un-composited / as is, of the winner), the pixels filled and why a pair was left
    (``reason``: "" when filled)."""

    frames: tuple[int, int]
    radius_px: float
    near: int | None = None
    order_log_ratio: float = 0.0
    spill_ratio: float = 1.0
    filled_px: int = 0
    reason: str = ""

    def to_dict(self) -> dict:
        return {"frames": list(self.frames), "radius_px": round(self.radius_px, 2), "near": self.near,
                "order_log_ratio": round(self.order_log_ratio, 3), "spill_ratio": round(self.spill_ratio, 3),
                "filled_px": self.filled_px, "reason": self.reason}


def order_pair(
    lin: tuple[np.ndarray, np.ndarray], guide: tuple[np.ndarray, np.ndarray], regions: tuple[np.ndarray, np.ndarray],
    seam: np.ndarray, radius: float, *, margin: float, max_spill_ratio: float, matte: MatteSpec = MatteSpec(),
) -> tuple[int | None, float, float, _Side | None]:
    """Which of two frames is the near one at their shared boundary (module docstring).

    Args:
        lin: the two frames ``(h, w, 3)`` float32 in linear light.
        guide: the two frames ``(h, w, 3)`` float32 sRGB-encoded in [0, 1] (the matte's guide).
        regions: ``(h, w)`` bool, where the decision map chose each frame.
        seam: ``(h, w)`` bool, their shared boundary pixels.
        radius: the defocus radius between them (px), as the re-blur fit gives it
            (:func:`focusstack.maps.reblur.fit_pair_blur`, a Gaussian-equivalent radius); the
            PSF un-composited is the pillbox of :func:`~focusstack.maps.reblur.pillbox_radius`
            of it (9 % smaller: devTR +0.14 dB, band +0.20; devA +0.08, band +0.13).
        margin: the log ratio of residuals needed to decide.
        max_spill_ratio: un-compositing must bring the winner's residual to at most this
            fraction of the far frame's as it is.
        matte: how each hypothesis' matte is made (:class:`MatteSpec`).

    Returns:
        ``(near index 0 | 1 | None, log ratio, spill ratio, the winner's side or None)``.
    """
    kernel = _disc(pillbox_radius(radius))
    near_seam = cv2.dilate(seam.astype(np.uint8), _ellipse(int(math.ceil(2 * radius)) + 2)) > 0
    s0 = _side(lin[0], lin[1], guide[0], regions[0], near_seam, radius, kernel, matte)
    s1 = _side(lin[1], lin[0], guide[1], regions[1], near_seam, radius, kernel, matte)
    if s0.residual is None or s1.residual is None or min(s0.residual, s1.residual) <= 0:
        return None, 0.0, 1.0, None
    ratio = math.log(s1.residual / s0.residual)
    win, side = (0, s0) if ratio > 0 else (1, s1)
    if abs(ratio) < margin:
        return None, ratio, 1.0, None
    plain = side.plain() if side.plain is not None else 0.0
    spill = side.residual / plain if plain > 0 else 1.0
    if spill > max_spill_ratio:
        return None, ratio, spill, None
    return win, ratio, spill, side


def halo_fill(
    frames: tuple[np.ndarray, np.ndarray], regions: tuple[np.ndarray, np.ndarray],
    seam: np.ndarray, radius: float, pair_weight: np.ndarray | Callable[[], np.ndarray], *, margin: float = 0.3,
    max_spill_ratio: float = 1.0, matte: MatteSpec = MatteSpec(), detail_sigma: float = 0.5,
    full: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, int | None, float, float]:
    """The background side of one pair's occlusion boundary, synthesised (module docstring).

    The output is ``bg + (N - G * bg)``: the un-composited background plus the near frame's
    low frequencies less the background's. On the object's side of the refined matte (above
    :data:`_NEAR_SIDE`) the pixels that the decision gave the far frame take the near frame:
    there the far frame shows the object blurred with the background's texture seen through
    its rim, which a focus measure rewards. Every term but ``bg`` is smooth (a pillbox or a
    Gaussian of the halo's radius went into it), so with ``full`` the test and those terms run
    on ``frames`` (a downscaled crop) and only ``bg = (D - K * (m N)) / (1 - K * m)`` is formed
    at full size, from the full-size far frame and the upsampled spill terms, at the pixels
    replaced: the background keeps its full-resolution detail at a small-image cost.

    Args:
        frames: the two frames ``(h, w, 3)`` float32 sRGB-encoded in [0, 1] (a crop; also the
            matte's guide).
        regions, seam, radius, margin, max_spill_ratio, matte: as for :func:`order_pair`
            (``radius`` in px of ``frames``).
        detail_sigma: the background's detail is what lies above a Gaussian of this sigma
            (x radius).
        pair_weight: ``(H, W)`` float32, the two frames' summed weight in the fused image:
            only pixels made (almost) entirely of the pair are replaced. ``(H, W)`` is ``full``'s
            size, or ``frames``' without it; or a function that makes it (called only when
            the order is decided).
        full: the same crop of the two frames at full size, ``(H, W, 3)`` float32 sRGB-encoded,
            of which ``frames`` is the downscaled copy (views will do: only the pixels
            replaced are read); None: ``frames`` are full size.

    Returns:
        ``(mask (H, W) bool, values (n, 3) float32 sRGB-encoded for the mask's pixels in
        row-major order, near index, log ratio, spill ratio)``: the synthesised background
        side and the object's side that takes the near frame; mask and values are None when
        the order is undecided.
    """
    lin = (srgb_to_linear(frames[0]), srgb_to_linear(frames[1]))
    near, ratio, spill, side = order_pair(lin, frames, regions, seam, radius, margin=margin, max_spill_ratio=max_spill_ratio, matte=matte)
    if near is None or side is None:
        return None, None, near, ratio, spill
    kernel, near_seam = side.kernel, side.near_seam  # (the order test's, for the same pair)
    side.matte = _refine_matte(side, lin[near], lin[1 - near], frames[near], regions[near], radius, matte)
    m = (side.matte > 0.5).astype(np.float32) * near_seam  # the occluder, near this boundary only
    n_lin, f_lin = lin[near], lin[1 - near]
    spill_img = _blur(n_lin * m[..., None], kernel)
    beta = _blur(m, kernel)
    bg = _uncomposite(f_lin, spill_img, beta[..., None])
    low = n_lin - cv2.GaussianBlur(bg, (0, 0), max(1.0, detail_sigma * radius), borderType=_BORDER)
    # where the spill estimate takes more light than the far frame has (by 30 %, in any
    # channel), the model does not hold: left as composed. Free on devbench; on a real stack
    # (pcb7) these are the specks of colour at the edges of bright pins (docs/decision.md).
    fits = ~((f_lin - spill_img) < -0.3 * f_lin - 0.002).any(axis=2)
    if callable(pair_weight):
        pair_weight = pair_weight()
    inside = _object_side(side.matte, near_seam, regions[near], regions[1 - near], frames[near], radius)
    if full is None:
        mask = (beta > 0.01) & (m < 0.5) & near_seam & fits & (pair_weight > 0.9)
        near_px = inside & ~mask & (pair_weight > 0.9)
        values = linear_to_srgb(np.clip(bg[mask] + low[mask], 0.0, 1.0))
        values = _bounded(values, frames[near][mask], frames[1 - near][mask])
        return (*_with_near(mask, values, near_px, frames[near]), near, ratio, spill)
    hh, ww = full[0].shape[:2]

    def up(x: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        return cv2.resize(x, (ww, hh), interpolation=interpolation)

    ok = up((fits & near_seam).astype(np.uint8), cv2.INTER_NEAREST) > 0
    matte_up = up(side.matte)
    mask = (up(beta) > 0.01) & (matte_up <= 0.5) & ok & (pair_weight > 0.9)
    near_px = (matte_up > _NEAR_SIDE) & (up(inside.astype(np.uint8), cv2.INTER_NEAREST) > 0) & ~mask & (pair_weight > 0.9)
    ys, xs = np.nonzero(mask)
    n = len(ys)
    if n == 0:
        return (*_with_near(mask, np.zeros((0, 3), np.float32), near_px, full[near]), near, ratio, spill)
    # the smooth terms at the replaced pixels: bilinear, on resize's pixel-centre grid
    sy, sx = frames[0].shape[0] / hh, frames[0].shape[1] / ww
    rows = -(-n // 1024)  # the points as a (rows, 1024) map: remap wants image-sized maps
    map_x = np.zeros(rows * 1024, np.float32)
    map_y = np.zeros(rows * 1024, np.float32)
    map_x[:n] = (xs.astype(np.float32) + 0.5) * sx - 0.5
    map_y[:n] = (ys.astype(np.float32) + 0.5) * sy - 0.5
    map_x, map_y = map_x.reshape(rows, 1024), map_y.reshape(rows, 1024)

    def at(x: np.ndarray) -> np.ndarray:
        c = x.shape[2] if x.ndim == 3 else 1
        return cv2.remap(x, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, c)[:n]

    bg_px = _uncomposite(srgb_to_linear(full[1 - near][mask]), at(spill_img), at(beta))
    values = linear_to_srgb(np.clip(bg_px + at(low), 0.0, 1.0))
    values = _bounded(values, full[near][mask], full[1 - near][mask])
    return (*_with_near(mask, values, near_px, full[near]), near, ratio, spill)


def _object_side(matte: np.ndarray, near_seam: np.ndarray, near_region: np.ndarray, far_region: np.ndarray,
                 near_guide: np.ndarray, radius: float) -> np.ndarray:
    """``(h, w)`` bool: the pixels of ``far_region`` that the refined ``matte`` puts on the
    object (above :data:`_NEAR_SIDE`, within ``near_seam``) and whose colour in the near frame
    (``near_guide`` ``(h, w, 3)`` sRGB-encoded) is closer to the near region's local mean than
    to the rest of the far region's (both within a Gaussian window of sigma ``radius``): the
    object's own colour, not the blurred background that the near frame shows through a gap
    the matte closes over (thin hair: devA scene_019 lost 0.73 dB without this test)."""
    cand = (matte > _NEAR_SIDE) & near_seam & far_region
    if not cand.any():
        return cand
    sigma = max(1.0, radius)
    # only the candidates' box, padded by the Gaussian's reach (OpenCV's float kernel spans 4
    # sigma), is filtered: the values at the candidates are the whole crop's
    ys, xs = np.nonzero(cand)
    pad = int(math.ceil(4 * sigma)) + 1
    box = np.s_[max(0, ys.min() - pad):ys.max() + pad + 1, max(0, xs.min() - pad):xs.max() + pad + 1]
    guide, c = near_guide[box], cand[box]

    def local_mean(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=_BORDER)
        m = cv2.GaussianBlur(guide * weight[..., None], (0, 0), sigma, borderType=_BORDER)
        return m / np.maximum(w, 1e-6)[..., None], w

    m_obj, _ = local_mean(near_region[box].astype(np.float32))
    m_bg, w_bg = local_mean((far_region[box] & ~c).astype(np.float32))
    d_obj = np.abs(guide - m_obj).sum(axis=2)
    d_bg = np.abs(guide - m_bg).sum(axis=2)
    out = np.zeros_like(cand)
    out[box] = c & (d_obj <= d_bg) & (w_bg >= 1e-3)
    return out


def _with_near(mask: np.ndarray, values: np.ndarray, near_px: np.ndarray, near_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` ``(H, W)`` bool with its ``values`` ``(n, 3)`` (row-major), joined by the
    disjoint ``near_px`` ``(H, W)`` bool, which take ``near_frame``'s ``(H, W, 3)`` values:
    ``(mask | near_px, values for it in row-major order)``."""
    if not near_px.any():
        return mask, values
    both = mask | near_px
    out = np.empty((int(both.sum()), 3), np.float32)
    synth = mask[both]  # which of the joined pixels, in row-major order, are synthesised
    out[synth] = values
    out[~synth] = near_frame[near_px]
    return both, out


def _uncomposite(far_lin: np.ndarray, spill: np.ndarray, k_a: np.ndarray) -> np.ndarray:
    """The background behind the spill, ``(D - K * (a N)) / (1 - K * a)`` in [0, 1] (linear
    light; ``k_a`` with a channel axis of 1, the divisor floored at 0.3)."""
    return np.clip((far_lin - spill) / np.maximum(1.0 - k_a, 0.3), 0.0, 1.0)



#: How far (sRGB-encoded, 0-1) a synthesised value may leave the range of the two frames'
#: values at its pixel, per channel. The true background can be darker than both (a dark
#: texel under a bright spill) or brighter, but not by much where the model holds; where it
#: does not (real lenses, focus breathing) the un-compositing runs off. devbench: devTR
#: +0.06 dB, devA +0.10 (0.05: devTR -0.04, 0.2: +0.04); on pcb7 at 768 px most of the dark
#: and coloured specks at the pin tips go (docs/decision.md step 3c).
_RANGE_SLACK = 0.1

#: The near frame is taken where the refined matte is above this and the decision gave the far
#: frame (the object's rim, which the far frame shows blurred, with the background seen
#: through it), when the near frame's colour there is the object's (:func:`_object_side`).
#: devbench against none (session 13): devTR 44.16 -> 44.32 dB (band 34.68 -> 34.92; scene_000
#: +0.8), devA 41.71 -> 41.76, MF-VOC unchanged; without the colour test devTR 44.33 and devA
#: 41.72 (scene_019 -0.73); thresholds 0.4 / 0.6 / 0.8 (without it): devTR 44.33 / 44.28 /
#: 44.19. Session 11 measured the idea on the unrefined matte at +0.09 / -0.02.
_NEAR_SIDE = 0.5


def _bounded(values: np.ndarray, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """``values`` ``(n, 3)`` kept within ``_RANGE_SLACK`` of ``[min, max]`` of the two frames'
    ``(n, 3)`` values (all float32 sRGB-encoded in [0, 1])."""
    lo = np.minimum(near, far) - np.float32(_RANGE_SLACK)
    hi = np.maximum(near, far) + np.float32(_RANGE_SLACK)
    return np.clip(values, lo, hi).astype(np.float32)
