"""Registration of a chain of frames, each against its focus neighbour, with every transform
judged against the identity (docs/align.md): :class:`Chain` is fed one grey working image per
frame and keeps the pairwise transforms and their verdicts (:class:`PairCheck`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from focusstack.align.blurmatch import PreparedFrame, blur_matched_refine
from focusstack.align.registration import build_pyramid, corner_shift, register_pair, rescale_transform
from focusstack.config import AlignConfig
from focusstack.errors import StackError

__all__ = ["Chain", "PairCheck", "lowpass_residual"]


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


class Chain:
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
