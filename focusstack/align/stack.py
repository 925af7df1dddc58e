"""Alignment of a whole stack, streamed: pass 1 estimates, pass 2 applies.

Pass 1 (:func:`analyse_stack`) reads every frame once, in name order, and keeps only small
things per frame: its sharpness grid (``focusstack.longstack.focus_grid``) and the transform to
its predecessor, found on a downscaled grey image. Neighbours are registered to each other, not
to the reference, because neighbouring frames are focused at nearly the same distance and look
alike; the transforms are then chained to the reference (the middle frame of the focus order):

    T_ref<-k = T_ref<-k-1 . T_k-1<-k     (frames after the reference; the inverse before it).

If the focus order found from the sharpness grids differs from the name order, the chain is
registered again along the focus order (one more read of every frame).

Pass 2 (:class:`FramePreparer`) reads a frame when a slab needs it, warps it into the output box
(:mod:`focusstack.align.warp`) and matches its exposure to the reference
(:mod:`focusstack.align.exposure`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from focusstack.align.blurmatch import PreparedFrame, blur_matched_refine
from focusstack.align.exposure import GainReference, apply_gains, estimate_gains
from focusstack.align.registration import (
    build_pyramid,
    corner_shift,
    downscale_matrix,
    register_pair,
    rescale_transform,
)
from focusstack.align.warp import Crop, common_area, full_area, is_identity, warp_frame
from focusstack.config import AlignConfig
from focusstack.engines.focus import luminance
from focusstack.errors import StackError
from focusstack.io import Frame
from focusstack.longstack import FocusOrder, energy_map, focus_order, grid_from_energy

__all__ = ["FramePreparer", "StackAnalysis", "analyse_stack"]

log = logging.getLogger("focusstack.align")

Reader = Callable[[Path], Frame]
Advance = Callable[[int, int], None]


@dataclass
class StackAnalysis:
    """What pass 1 found. Lists are in name order (the order of ``paths``).

    ``transforms[k]``: ``(3, 3)`` float64 ``T_ref<-k`` (frame ``k`` pixels -> reference pixels,
    full resolution; exactly the identity for the reference and with alignment off).
    ``correlations[k]``: ECC correlation of frame ``k`` with its focus-order predecessor on the
    way to the reference (None for the reference). ``crop``: the output box in reference pixels.
    """

    paths: list[Path]
    width: int
    height: int
    order: FocusOrder
    reference: int
    transforms: list[np.ndarray]
    correlations: list[float | None]
    crop: Crop
    #: The area every frame covers (equal to ``crop`` unless ``--keep-size``): exposure is
    #: measured there only.
    common: Crop
    aligned: bool
    model: str | None
    #: EXIF and ICC of the first frame by name (the output keeps them).
    exif: bytes | None = None
    icc: bytes | None = None
    cache: dict[int, Frame] = field(default_factory=dict)
    reads: int = 0
    #: Per frame (name order): the verdict on its transform to its focus neighbour (None for
    #: the first frame of the chain or with alignment off); see :class:`PairCheck`.
    checks: list[dict | None] = field(default_factory=list)

    def frame_report(self, k: int) -> dict:
        t = self.transforms[k]
        return {
            "file": self.paths[k].name,
            "matrix": [[round(float(v), 8) for v in row] for row in t],
            "corner_shift_px": round(corner_shift(t, self.width, self.height), 4),
            "correlation": None if self.correlations[k] is None else round(self.correlations[k], 4),
            "check": self.checks[k] if k < len(self.checks) else None,
        }


def _working_gray(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` float32 -> (grey ``(h, w)`` float32 with ``max(h, w) <= max_side``,
    ``(3, 3)`` full -> working pixel coordinates)."""
    h, w = pixels.shape[:2]
    s = min(1.0, max_side / max(h, w))
    y = luminance(pixels)
    if s >= 1.0:
        return y, np.eye(3)
    ws, hs = max(8, round(w * s)), max(8, round(h * s))
    small = cv2.resize(y, (ws, hs), interpolation=cv2.INTER_AREA)
    return small, downscale_matrix(ws / w, hs / h)


def lowpass_residual(fixed_lp: np.ndarray, moving_lp: np.ndarray, t: np.ndarray, margin: int) -> tuple[float, float]:
    """How well ``moving`` warped by ``t`` matches ``fixed`` on structure both frames share.

    Args:
        fixed_lp, moving_lp: ``(h, w)`` float32 grey images in [0, 1] of one size (working
            size), already low-passed (:meth:`_Chain.lowpass`): defocus changes the fine detail
            of a frame, not its low frequencies, so these hold what the frames have in common.
        t: ``(3, 3)`` moving -> fixed pixels of that size.
        margin: border (px) left out, where the low-pass saw the image edge.

    Returns:
        ``(1 - ncc, ncc)`` over the pixels that the warp covers, away from the border.
    """
    h, w = fixed_lp.shape
    warped = cv2.warpPerspective(moving_lp, t, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpPerspective(np.ones_like(moving_lp), t, (w, h), flags=cv2.INTER_NEAREST, borderValue=0.0) > 0.5
    cover[:margin] = cover[h - margin :] = False
    cover[:, :margin] = cover[:, w - margin :] = False
    if cover.sum() < 64:
        return 1.0, 0.0
    a = fixed_lp[cover].astype(np.float64)
    b = warped[cover].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    ncc = float((a * b).sum()) / den if den > 0 else 1.0  # two flat frames match
    return 1.0 - ncc, ncc


@dataclass
class PairCheck:
    """The verdict on one pairwise transform: ``status`` is ``"aligned"`` (kept),
    ``"identity"`` (no measurable gain over the identity: registered already) or ``"uncertain"``
    (registration failed: the identity is used, with a warning); residual ratio and the
    low-pass correlations under the identity and the transform."""

    status: str
    ratio: float
    ncc_identity: float
    ncc_transform: float

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "residual_ratio": round(self.ratio, 4),
            "lowpass_ncc_identity": round(self.ncc_identity, 4),
            "lowpass_ncc_transform": round(self.ncc_transform, 4),
        }


@dataclass(frozen=True)
class _Attempt:
    """One ECC registration of a pair, judged against the identity."""

    transform: np.ndarray  # moving -> fixed, working pixels
    rho: float  # ECC's correlation (nan when ECC failed)
    ratio: float  # low-pass residual under the transform / under the identity
    ncc: float  # low-pass correlation under the transform
    plausible: bool  # finite, rho >= min_correlation, a corner step within max_step
    verified: bool  # plausible and a measurable gain over the identity


class _Frame:
    """What the chain keeps of the previous frame: its pyramid, its low-passed grey image and name."""

    __slots__ = ("pyramid", "lowpass", "name", "gray", "prepared")

    def __init__(self, pyramid: list, lowpass: np.ndarray, name: str, gray: np.ndarray) -> None:
        self.pyramid, self.lowpass, self.name, self.gray = pyramid, lowpass, name, gray
        self.prepared = PreparedFrame(gray)  # for blur-matched refinement, shared by both pairs


class _Chain:
    """Registers each frame fed to it against the previous one (pass 1), and verifies every
    transform against the identity (:func:`lowpass_residual`)."""

    def __init__(self, config: AlignConfig) -> None:
        self.config = config
        self.prev: _Frame | None = None
        self.pairs: list[tuple[np.ndarray, float]] = []  # T_prev<-cur (full res), correlation
        self.checks: list[PairCheck] = []
        self.error: StackError | None = None  # the first pair that failed (a stray frame)
        self.margin = 2  # border (px) that lowpass_residual leaves out; set per frame size

    def _attempt(
        self, fixed: list, moving: list, lowpass: tuple[np.ndarray, np.ndarray], e_id: float, names: tuple[str, str], min_level: int = 0
    ) -> _Attempt:
        cfg = self.config
        try:
            res = register_pair(fixed, moving, cfg.model, iterations=cfg.iterations, names=names, min_level=min_level)
            t, rho = res.transform, res.correlation
        except StackError:
            t, rho = np.eye(3), float("nan")
        h, w = lowpass[0].shape
        e_t, ncc = lowpass_residual(*lowpass, t, self.margin)
        plausible = bool(
            np.all(np.isfinite(t)) and np.isfinite(rho) and rho >= cfg.min_correlation
            and corner_shift(t, w, h) <= cfg.max_step * math.hypot(w, h)
        )
        ratio = e_t / e_id if e_id > 1e-9 else 1.0
        verified = plausible and ratio <= cfg.verify_ratio and e_id - e_t >= cfg.verify_min_gain
        return _Attempt(t, rho, ratio, ncc, plausible, verified)

    def _plain(self, prev: _Frame, cur: _Frame, lowpass: tuple[np.ndarray, np.ndarray], e_id: float, names: tuple[str, str], min_level: int) -> _Attempt:
        """ECC on the band-passed pyramids; once more on the low-passed images (strong defocus
        leaves little shared band-pass detail) only when ECC converged poorly: a confident
        band-pass fit that does not verify is a registered pair (ECC drifted; so would this)."""
        cfg = self.config
        best = self._attempt(prev.pyramid, cur.pyramid, lowpass, e_id, names, min_level)
        if not best.verified and e_id >= 2 * cfg.verify_min_gain and not (best.plausible and best.rho >= 0.8):
            low = self._attempt(build_pyramid(prev.lowpass, cfg.min_side), build_pyramid(cur.lowpass, cfg.min_side), lowpass, e_id, names, min_level)
            if low.verified or (low.plausible and low.ratio < best.ratio):
                best = low
        return best

    def _blur_matched(self, prev: _Frame, cur: _Frame, best: _Attempt, e_id: float) -> _Attempt | None:
        """ECC's result refined and judged on blur-matched composites (:mod:`focusstack.align.blurmatch`)
        when the two frames differ in blur; None when they do not (equally sharp)."""
        cfg = self.config
        start = best.transform if best.plausible else np.eye(3)
        bm = blur_matched_refine(prev.gray, cur.gray, start, cfg.model, prepared=(prev.prepared, cur.prepared))
        if bm is None:
            return None
        h, w = prev.gray.shape
        plausible = bool(np.all(np.isfinite(bm.transform)) and corner_shift(bm.transform, w, h) <= cfg.max_step * math.hypot(w, h))
        gain = bm.residual_identity - bm.residual
        verified = plausible and bm.ratio <= cfg.verify_ratio and gain >= cfg.verify_min_gain
        e_lp, ncc = lowpass_residual(prev.lowpass, cur.lowpass, bm.transform, self.margin)
        # and the low-passed frames must match measurably better than as they are, and the two
        # residual ratios together show at least a 2x gain: composites of frames whose blur is not
        # a defocus PSF (blur applied to encoded values, pasted with a hard mask: MF-VOC) can
        # favour a small shift or scale of a registered pair. Measured on every pair: the 81 true
        # transforms of warped devA have low-pass ratios <= 0.94 and products <= 0.48; the 13
        # MF-VOC pairs (of 198) that pass the composites have low-pass ratios >= 0.88 and
        # products >= 0.53, or a low-pass ratio > 1.
        lp_ratio = e_lp / e_id if e_id > 1e-9 else 1.0
        if not verified or lp_ratio > cfg.blur_matched_lowpass or lp_ratio * bm.ratio > cfg.blur_matched_gain:
            return _Attempt(np.eye(3), bm.correlation, 1.0, best.ncc, True, False)
        return _Attempt(bm.transform, bm.correlation, bm.ratio, ncc, True, True)

    def feed(self, gray: np.ndarray, to_working: np.ndarray, name: str) -> None:
        cfg = self.config
        sigma = max(1.0, cfg.verify_sigma * max(gray.shape))
        self.margin = max(2, int(round(2 * sigma)))
        cur = _Frame(build_pyramid(gray, cfg.min_side), cv2.GaussianBlur(gray, (0, 0), sigma), name, gray)
        prev, self.prev = self.prev, cur
        if prev is None:
            return
        names = (prev.name, name)
        lowpass = (prev.lowpass, cur.lowpass)
        e_id, ncc_id = lowpass_residual(*lowpass, np.eye(3), self.margin)
        # with blur-matched refinement to follow, plain ECC stops at half size (the refinement
        # works at that size too); it goes to full size only when the frames are equally sharp
        coarse = 1 if cfg.blur_matched and len(cur.pyramid) > 1 else 0
        best = self._plain(prev, cur, lowpass, e_id, names, coarse)
        if cfg.blur_matched:
            refined = self._blur_matched(prev, cur, best, e_id)
            if refined is not None:
                best = refined
            elif coarse:
                best = self._plain(prev, cur, lowpass, e_id, names, 0)
        if best.verified:
            status = "aligned"
        elif best.plausible or best.ratio >= 0.98 or e_id < 2 * cfg.verify_min_gain:
            # ECC found a transform, but it does not match better than the identity: the
            # frames are registered already (ECC drifts on differently defocused frames)
            status = "identity"
        else:
            status = "uncertain"  # ECC failed and the frames differ: the identity, warned
        self.checks.append(PairCheck(status, float(best.ratio), ncc_id, best.ncc))
        stray = max(ncc_id, best.ncc if best.plausible else -1.0) < cfg.stray_correlation
        if stray and self.error is None:
            self.error = StackError(
                f"alignment failed for frame {name}: it does not match its focus neighbour {prev.name}",
                expected=f"a low-pass correlation of at least {cfg.stray_correlation} with the neighbouring frame",
                actual=f"{ncc_id:.3f} as the frames are, {best.ncc:.3f} after registration",
                fix="check that this frame belongs to the stack (a stray shot?) and remove it; "
                "--no-align skips alignment (and this check) for frames that are registered already",
            )
        keep = rescale_transform(best.transform, to_working) if status == "aligned" else np.eye(3)
        self.pairs.append((keep, float(best.rho) if np.isfinite(best.rho) else 0.0))


def _chain_transforms(pairs: list[tuple[np.ndarray, float]], seq: list[int]) -> list[np.ndarray]:
    """``T_ref<-k`` for every frame (name order) from the pairwise transforms along ``seq``
    (``pairs[j]`` maps ``seq[j + 1]`` to ``seq[j]``); the reference is ``seq``'s middle."""
    n = len(seq)
    ref_pos = n // 2
    out = [np.eye(3) for _ in range(n)]
    for pos in range(ref_pos + 1, n):
        out[seq[pos]] = out[seq[pos - 1]] @ pairs[pos - 1][0]
    for pos in range(ref_pos - 1, -1, -1):
        out[seq[pos]] = out[seq[pos + 1]] @ np.linalg.inv(pairs[pos][0])
    return out


def _grids(energies: list[np.ndarray], transforms: list[np.ndarray] | None, to_energy: np.ndarray) -> list[np.ndarray]:
    """Focus grids of the energy maps, warped into the reference geometry (when transforms are
    given) and cut to the area all of them cover, so that one cell is one scene region."""
    if transforms is None:
        return [grid_from_energy(e) for e in energies]
    eh, ew = energies[0].shape
    inv = np.linalg.inv(to_energy)
    maps = [to_energy @ t @ inv for t in transforms]
    try:
        box = common_area(maps, ew, eh)
    except StackError:
        box = full_area(ew, eh)
    grids = []
    for e, m in zip(energies, maps):
        w = cv2.warpPerspective(e, m, (ew, eh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        grids.append(grid_from_energy(w[box.y0 : box.y1, box.x0 : box.x1]))
    return grids


def analyse_stack(
    paths: Sequence[Path],
    read: Reader,
    config: AlignConfig,
    *,
    need_order: bool,
    order_mode: str = "auto",
    keep_frames: bool = False,
    on_frame: Advance | None = None,
) -> StackAnalysis:
    """Pass 1: read every frame once; estimate focus order and alignment.

    Args:
        paths: the frames in name order (at least 2, one size).
        read: ``path -> Frame`` (``focusstack.io.read_image`` with the size limit bound).
        config: alignment settings; ``config.enabled`` False gives identity transforms.
        need_order: find the focus order from the frames (long stacks, or alignment chains).
        order_mode: ``"auto"`` (sharpness, falling back to names) or ``"name"``.
        keep_frames: keep the decoded frames in ``cache`` (short stacks: pass 2 reuses them).
        on_frame: progress ``(done, total)``.

    Raises:
        StackError: alignment failed (names the frame; suggests ``--no-align``).
        ImageReadError: a frame cannot be decoded.
    """
    paths = [Path(p) for p in paths]
    n = len(paths)
    align = config.enabled
    total = n
    energies: list[np.ndarray] = []
    to_energy = np.eye(3)
    # A short stack is kept in memory: find the focus order first and register once, along it.
    # A long one is registered while it streams past (name order), and again only if needed.
    chain = _Chain(config) if align and not keep_frames else None
    exif = icc = None
    cache: dict[int, Frame] = {}
    reads = 0
    width = height = 0
    for i, p in enumerate(paths):
        frame = read(p)
        reads += 1
        height, width = frame.pixels.shape[:2]
        if i == 0:
            exif, icc = frame.exif, frame.icc
        gray, to_working = _working_gray(frame.pixels, config.max_side if align else 512)
        if need_order:
            energies.append(energy_map(gray))
            to_energy = downscale_matrix(energies[-1].shape[1] / gray.shape[1], energies[-1].shape[0] / gray.shape[0]) @ to_working
        if chain is not None:
            chain.feed(gray, to_working, p.name)
        if keep_frames:
            cache[i] = frame
        del frame, gray
        if on_frame is not None:
            on_frame(i + 1, total)

    if need_order and order_mode == "auto":
        usable = chain is not None and chain.error is None
        provisional = _chain_transforms(chain.pairs, list(range(n))) if usable else None
        order = focus_order(_grids(energies, provisional, to_energy))
    else:
        order = FocusOrder(list(range(n)), "name", 0.0, 0.0)

    seq = order.order
    pairs = chain.pairs if chain is not None else []
    if align and (chain is None or seq != list(range(n))):
        # frames are not focus neighbours in name order: register along the focus order
        total += n
        chain = _Chain(config)
        for j, k in enumerate(seq):
            cached = cache.get(k)
            frame = cached if cached is not None else read(paths[k])
            reads += cached is None
            gray, to_working = _working_gray(frame.pixels, config.max_side)
            chain.feed(gray, to_working, paths[k].name)
            del frame, gray
            if on_frame is not None:
                on_frame(n + j + 1, total)
        pairs = chain.pairs
    if chain is not None and chain.error is not None:
        raise chain.error
    checks: list[dict | None] = [None] * n
    if chain is not None:
        for j, c in enumerate(chain.checks):  # check j: frame seq[j + 1] against seq[j]
            checks[seq[j + 1]] = {"against": paths[seq[j]].name, **c.to_dict()}
            if c.status == "uncertain":
                log.warning(
                    "warning: registration of %s against %s is uncertain (residual ratio %.2f); "
                    "taking it as registered already (identity)", paths[seq[j + 1]].name, paths[seq[j]].name, c.ratio,
                )

    ref_pos = len(seq) // 2
    reference = seq[ref_pos]
    transforms = [np.eye(3) for _ in range(n)]
    correlations: list[float | None] = [None] * n
    if align:
        tol = config.snap_px
        for pos in range(ref_pos + 1, n):  # after the reference: T_ref<-k = T_ref<-prev . T_prev<-k
            t, rho = pairs[pos - 1]
            transforms[seq[pos]] = transforms[seq[pos - 1]] @ t
            correlations[seq[pos]] = rho
        for pos in range(ref_pos - 1, -1, -1):  # before it: T_ref<-k = T_ref<-next . T_next<-k
            t, rho = pairs[pos]  # T_k<-next
            transforms[seq[pos]] = transforms[seq[pos + 1]] @ np.linalg.inv(t)
            correlations[seq[pos]] = rho
        for k in range(n):
            transforms[k] /= transforms[k][2, 2]
            if is_identity(transforms[k], width, height, tol):
                transforms[k] = np.eye(3)
    common = full_area(width, height)
    if align:
        try:
            common = common_area(transforms, width, height, names=[p.name for p in paths])
        except StackError:
            if not config.keep_size:
                raise
    crop = full_area(width, height) if config.keep_size else common
    return StackAnalysis(
        paths=paths,
        width=width,
        height=height,
        order=order,
        reference=reference,
        transforms=transforms,
        correlations=correlations,
        crop=crop,
        common=common,
        aligned=align,
        model=config.model if align else None,
        exif=exif,
        icc=icc,
        cache=cache,
        reads=reads,
        checks=checks,
    )


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
