"""The hybrid engine (the default): source pixels where a frame is sharp, the transition-region
refinement at the boundaries between frames, and VAEEDOF where no frame is sharp.

Each of the two papers fixes what the other cannot. The decision engine (TR paper, Eq. 9) keeps
every source pixel but cannot invent what no frame shows sharp; VAEEDOF fills such regions but
sends every pixel through TAEF2's round trip (about 30 dB on real photos). The hybrid joins them
with three maps, all ``(H, W)`` float32 in [0, 1]:

1. **Decision** (``focusstack.maps.decision``): labels, soft weights ``M_k``, the fused
   ``R_init`` and its confidence ``c`` (the chosen frame's focus energy over the best other
   frame's: 1 where it is at least twice as sharp).
2. **Transition regions** (``focusstack.refinement.stack``): wherever the decision map puts a
   nearer frame next to a farther one, the diffusion of the blurred foreground is removed
   (Eq. 13-15). ``D`` = ``R_init`` with those regions refined. ``T`` marks a band of
   ``band`` px around the label boundaries that the refinement acted on, where the decision
   around them is mostly confident: there ``D`` is trusted (the TR refinement's job).
3. **Agreement** ``a``: 1 where every frame shows (nearly) the same thing, whatever the focus
   measure says (flat sky, a wall): ``1 - max_k |Y_k - Y(R_init)| / agree_tol``, box-smoothed.

``trust = max(ramp(c), a, T)``, feathered with a Gaussian (``feather``); ``ramp`` maps
``[trust_low, trust_high]`` to [0, 1]. Where ``trust < 1`` the VAEEDOF result ``V`` is needed.
It is colour-matched to ``D`` at low frequency, ``V' = V + G_s * (D - V)`` (normalised over
the region where ``V`` was computed; ``s = colour_sigma``), because TAEF2 shifts colours
slightly and ``D``'s low frequencies are right even where it is blurred. Then

    out = trust * D + (1 - trust) * V'      (and exactly D where trust == 1).

VAEEDOF runs only on the bounding box of the pixels that need it (plus context), and only
decodes the patches that hold such pixels; when no pixel needs it, it does not run at all.

**Confidence** (what ``--save-steps`` writes, and the guarantee the tests check):
``confidence = min(trust, max_k M_k)``, and at most 0.99 where the TR refinement changed the
pixel. So ``confidence == 1`` implies the output pixel *is* a source pixel (bit-exact; 16-bit
frames come back unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from focusstack.errors import StackError
from focusstack.maps.decision import DecisionConfig, DecisionSteps, decision_steps
from focusstack.ops import box as box_mean
from focusstack.ops import gaussian, luminance
from focusstack.progress import Advance
from focusstack.refinement.refine import RefineConfig
from focusstack.refinement.stack import refine_stack



@dataclass(frozen=True)
class HybridConfig:
    """Parameters of the hybrid engine. Sizes given as fractions scale with the image's shorter
    side, with a floor in pixels."""

    #: Decision confidence below ``trust_low`` gives VAEEDOF full weight, above ``trust_high``
    #: none; linear between.
    trust_low: float = 0.03
    trust_high: float = 0.15
    #: Frames "agree" where they differ from the decision output by less than this (in [0, 1]
    #: units of luminance, box-smoothed over ``agree_radius``).
    agree_tol: float = 4.0 / 255.0
    agree_radius: float = 0.004
    #: Half-width of the transition band around label boundaries where the decision/TR result
    #: is trusted (fraction of the shorter side, at least 4 px).
    band: float = 0.012
    #: Apply the transition-region refinement (off: the band shows R_init).
    refine_transitions: bool = True
    #: Gaussian sigma that feathers the trust map (fraction, at least 1.5 px).
    feather: float = 0.003
    #: Gaussian sigma of the colour match of the VAEEDOF output (fraction, at least 4 px).
    colour_sigma: float = 0.015
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.trust_low < self.trust_high <= 1.0:
            raise ValueError(f"need 0 <= trust_low < trust_high <= 1, got {self.trust_low}, {self.trust_high}")
        for name in ("agree_tol", "agree_radius", "band", "feather", "colour_sigma"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")

    @staticmethod
    def px(fraction: float, shape: tuple[int, int], floor: float) -> float:
        return max(floor, fraction * min(shape))


@dataclass
class HybridSteps:
    """Every map of one hybrid fusion (``--save-steps``).

    ``decision``: the decision engine's steps; ``refined`` ``(H, W, 3)`` float32 in [0, 1]: ``D``;
    ``tr_active`` ``(H, W)`` bool: pixels the TR refinement changed; ``agreement``, ``trust``,
    ``confidence`` ``(H, W)`` float32 in [0, 1]; ``vaeedof`` ``(H, W, 3)`` float32 in [0, 1] or
    None (not needed), colour-matched where computed; ``fused`` ``(H, W, 3)`` float32 in [0, 1].
    """

    decision: DecisionSteps
    refined: np.ndarray
    tr_active: np.ndarray
    agreement: np.ndarray
    trust: np.ndarray
    confidence: np.ndarray
    vaeedof: np.ndarray | None
    vaeedof_box: tuple[int, int, int, int] | None
    fused: np.ndarray
    info: dict = field(default_factory=dict)

    def visualise(self) -> dict[str, np.ndarray]:
        """Images for ``--save-steps``: float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)``; the keys
        are :data:`STEP_IMAGES` (``vaeedof`` only when it ran)."""
        out = {
            "decision_map": self.decision.visualise()["labels"].astype(np.float32) / 255.0,
            "decision_confidence": self.decision.confidence,
            "agreement": self.agreement,
            "trust": self.trust,
            "confidence": self.confidence,
            "tr_active": self.tr_active.astype(np.float32),
            "decision": self.decision.fused,
            "transition_refined": self.refined,
            "hybrid": self.fused,
        }
        if self.vaeedof is not None:
            out["vaeedof"] = self.vaeedof
        return out


#: The ``--save-steps`` images (``<name>.png``, 16-bit), as :meth:`HybridSteps.visualise` names them.
STEP_IMAGES = ("decision_map", "decision_confidence", "agreement", "trust", "confidence", "tr_active",
               "decision", "transition_refined", "hybrid", "vaeedof")


def agreement_map(frames: Sequence[np.ndarray], reference: np.ndarray, tol: float, radius: int,
                  lumas: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``(H, W)`` float32 in [0, 1]: 1 where every frame's luminance is within ``tol`` of the
    reference's (box mean over ``2 radius + 1``), falling linearly to 0 at twice ``tol``.
    ``lumas``: the frames' luminance when already known (``DecisionSteps.lumas``)."""
    y_ref = luminance(reference)
    spread = np.zeros(y_ref.shape, np.float32)
    for y in (lumas if lumas else (luminance(f) for f in frames)):
        np.maximum(spread, np.abs(y - y_ref), out=spread)
    if radius >= 1:
        spread = box_mean(spread, 2 * radius + 1)
    if tol <= 0:
        return (spread <= 0).astype(np.float32)
    return np.clip(2.0 - spread / np.float32(tol), 0.0, 1.0).astype(np.float32)


def boundary_band(labels: np.ndarray, half_width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``half_width`` px of a boundary between two labels."""
    k3 = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(labels, k3, borderType=cv2.BORDER_REPLICATE) != cv2.erode(labels, k3, borderType=cv2.BORDER_REPLICATE)
    if not edge.any() or half_width <= 0:
        return edge
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * half_width + 1,) * 2)
    return cv2.dilate(edge.astype(np.uint8), ker).astype(bool)


def colour_match(v: np.ndarray, d: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """``V + G_s * (D - V)`` with the blur normalised over ``valid`` (``(H, W)`` bool): ``v``, ``d``
    ``(H, W, 3)`` float32 in [0, 1] -> ``(H, W, 3)`` float32 in [0, 1]."""
    wv = valid.astype(np.float32)
    num = gaussian((d - v) * wv[..., None], sigma)
    den = gaussian(wv, sigma)
    off = num / np.maximum(den, 1e-6)[..., None]
    return np.clip(v + off, 0.0, 1.0).astype(np.float32)


def _box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the bounding box of ``mask`` grown by ``pad`` px, inside the image."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    h, w = mask.shape
    return max(0, ys[0] - pad), min(h, ys[-1] + 1 + pad), max(0, xs[0] - pad), min(w, xs[-1] + 1 + pad)


class HybridEngine:
    """The hybrid engine (:class:`focusstack.engines.base.Stepped`): ``fuse(frames, *,
    on_tile=None)``, and ``steps(...)``, which keeps every map (``--save-steps``; the caller
    writes them).

    ``vaeedof``: a ``VAEEDOFEngine`` (its backend sets the 7-frame limit), or None to run
    without it (then ambiguous regions keep ``D``; for tests and the decision-only fallback).
    ``fsb``/``keb``: trained networks for the TR refinement, or None for its fallbacks, which
    ``fallbacks`` lists.
    """

    name = "hybrid"
    step_images = STEP_IMAGES

    def __init__(self, vaeedof=None, config: HybridConfig = HybridConfig(), *, refine_config=None, fsb=None, keb=None,  # noqa: ANN001
                 fallbacks: Sequence[str] = ()) -> None:
        self.vaeedof = vaeedof
        self.config = config
        self.refine_config = refine_config
        self.fsb = fsb
        self.keb = keb
        self.fallbacks = list(fallbacks)
        if vaeedof is not None:
            self.backend = vaeedof.backend
            self.device, self.precision = vaeedof.backend.device, vaeedof.backend.precision
            self.precision_reason = getattr(vaeedof.backend, "precision_reason", "")
            self.max_frames = vaeedof.backend.frames
        else:
            self.device, self.precision = "cpu", "fp32"
            self.precision_reason = "no networks (decision and transition refinement only)"
            self.max_frames = None

    def fuse(self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None) -> np.ndarray:
        """``K x (H, W, 3)`` float32 in [0, 1], one size -> ``(H, W, 3)`` float32 in [0, 1]."""
        return self.steps(frames, on_tile=on_tile).fused

    def steps(self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None) -> HybridSteps:
        cfg = self.config
        k = len(frames)
        if k < 1:
            raise ValueError("fuse needs at least one frame")
        if self.vaeedof is not None and k > self.vaeedof.backend.frames:
            raise StackError("too many frames for one hybrid fusion", expected=f"at most {self.vaeedof.backend.frames}",
                             actual=str(k), fix="fuse through focusstack.stack, which splits long stacks into slabs")
        h, w = frames[0].shape[:2]
        shape = (h, w)
        progress = {"done": 0, "total": 4}

        def tick(done: int | None = None, total: int | None = None) -> None:
            if on_tile is not None:
                on_tile(progress["done"] + (done or 0), progress["total"] + (total or 0))

        # 1. decision
        steps = decision_steps(frames, cfg.decision)
        progress["done"] += 1
        tick()
        d0 = steps.fused
        assert d0 is not None

        # 2. transition regions
        refined, tr_active, tr_info = d0, np.zeros(shape, bool), {"applied": False}
        if cfg.refine_transitions and k >= 2 and len(np.unique(steps.labels)) >= 2:
            rcfg = self.refine_config or RefineConfig(show_progress=False)
            tr = refine_stack(frames, rcfg, steps=steps, fsb=self.fsb, keb=self.keb)
            tr_active = np.abs(tr.diffusion).max(axis=-1) > 1e-6
            refined = np.where(tr_active[..., None], tr.refined, d0).astype(np.float32)
            tr_info = {"applied": True, "pairs": tr.pairs, **tr.info, "order_near_to_far": list(tr.ordering.order)}
        progress["done"] += 1
        tick()

        # 3. trust
        agree = agreement_map(frames, d0, cfg.agree_tol, int(round(cfg.px(cfg.agree_radius, shape, 2))), steps.lumas)
        ramp = np.clip((steps.confidence - cfg.trust_low) / (cfg.trust_high - cfg.trust_low), 0.0, 1.0)
        band_px = int(round(cfg.px(cfg.band, shape, 4)))
        band = boundary_band(steps.labels, band_px)
        # only boundaries the TR refinement acted on, between regions that were decided with
        # confidence (a noisy map in an ambiguous region has boundaries everywhere: not transitions)
        band &= cv2.dilate(tr_active.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        decided = box_mean(ramp.astype(np.float32), 2 * band_px + 1)
        band &= decided >= 0.5
        trust = np.maximum(np.maximum(ramp, agree), band.astype(np.float32))
        trust = np.clip(gaussian(trust.astype(np.float32), cfg.px(cfg.feather, shape, 1.5)), 0.0, 1.0)
        trust[trust > 0.999] = 1.0
        trust = trust.astype(np.float32)
        progress["done"] += 1
        tick()

        # 4. VAEEDOF where trust < 1, colour-matched, blended
        need = trust < 1.0
        v_full, box = None, None
        out = refined.copy()
        if need.any() and self.vaeedof is not None:
            sigma_c = cfg.px(cfg.colour_sigma, shape, 4)
            valid = cv2.dilate(need.astype(np.uint8), cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (2 * int(3 * sigma_c) + 1,) * 2)).astype(bool)
            y0, y1, x0, x1 = box = _box(valid, pad=64)
            crop = [np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames]
            v = self.vaeedof.fuse(crop, on_tile=tick, need=valid[y0:y1, x0:x1])
            v = colour_match(v, refined[y0:y1, x0:x1], valid[y0:y1, x0:x1], sigma_c)
            t = trust[y0:y1, x0:x1, None]
            blend = t * refined[y0:y1, x0:x1] + (1.0 - t) * v
            out[y0:y1, x0:x1] = np.where(t >= 1.0, refined[y0:y1, x0:x1], blend)
            v_full = np.zeros_like(refined)
            v_full[y0:y1, x0:x1] = np.where(valid[y0:y1, x0:x1, None], v, 0.0)
        progress["done"] += 1
        tick()

        confidence = np.minimum(trust, steps.weights.max(axis=0))
        confidence[tr_active] = np.minimum(confidence[tr_active], 0.99)
        if self.vaeedof is None:
            confidence[need] = np.minimum(confidence[need], 0.99)  # D stands in for VAEEDOF there
        info = {
            "trust_mean": round(float(trust.mean()), 4),
            "vaeedof_area": round(float(need.mean()), 4),
            "source_exact_area": round(float((confidence >= 1.0).mean()), 4),
            "tr_area": round(float(tr_active.mean()), 4),
            "vaeedof_box": [int(v) for v in box] if box else None,  # numbers, not numpy scalars
            "transition_refinement": tr_info,
        }
        return HybridSteps(steps, refined, tr_active, agree, trust, confidence.astype(np.float32), v_full, box,
                           np.clip(out, 0.0, 1.0), info)
