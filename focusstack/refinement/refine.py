"""The transition-region paper end to end on a near/far pair, on arrays.

Steps (each a function below; :func:`refine_pair` chains them; the ``refine-tr`` job,
``focusstack.jobs.refine_tr``, adds the file I/O of the CLI):

1. **Near and far** (:func:`focusstack.refinement.ordering.order_frames`): from the pixels, the
   frame that shows the occluding silhouette sharp is the near one. ``order="given"`` trusts
   the order of the arguments (near first).
2. **Foreground mask of the near frame** ``M``: the FSB (``models/fsb``) at a working size
   (long side at most ``work_size``), upsampled, then the boundary refinement below. Fallback
   when no FSB weights exist: the decision engine's soft map of the near frame.
3. **Boundary refinement** (:func:`refine_boundary`). The paper uses a dense CRF. We use the
   guided filter (He, Sun and Tang 2010) of the FSB probability map with the near frame's
   luminance as guide. Justification: the fully connected CRF's mean-field update with a
   Gaussian bilateral kernel is an edge-aware smoothing of the label probabilities by the
   image (Kraehenbuehl and Koltun 2011); the guided filter is a local linear model of the same
   edge-aware smoothing (its kernel approximates a joint-bilateral one), is exact and
   deterministic, has no extra dependency and runs in O(N) at any resolution, so the mask snaps
   to the near frame's sharp silhouette at full resolution even though the FSB ran smaller.
4. **PSF sigma** ``sigma`` of the foreground's blur in the far frame (:func:`estimate_sigma`):
   by default a least-squares fit of ``G_sigma * near`` to ``far`` inside the eroded mask
   (:func:`classical_fit`), which measured sigma better than the KEB on the rendered
   validation set; the KEB (``models/keb``, on (near, far, M) at the working size, scaled back
   to full resolution) where the fit has no minimum inside its range (small or thin
   foregrounds), or always with ``sigma_source="keb"``.
5. **R_init**: ``--init FILE`` (another method's fusion), or the decision engine's output
   (``r_init="decision"``, the default), or Eq. 9 with ``M`` (``r_init="eq9"``).
6. **Diffusion elimination** (Eq. 13-15, :mod:`focusstack.refinement.diffusion`):
   ``R = R_init - a S_pd``, by default in linear light (``linear_light``: the frames are sRGB
   decoded, the elimination done, the result re-encoded; defocus adds *light*, so Eq. 3-8 hold
   in linear light. On the rendered validation set with the GT mask and sigma this is +0.3 dB in
   the 16 px band over doing it on encoded values). Eq. 15 assumes ``R_init`` takes its background pixels from the far
   frame, which carries the diffusion; ``a`` (``far_share``) is the far frame's share of
   ``R_init`` at each pixel: 1 for Eq. 9 (plain Eq. 15), the far frame's soft decision weight for
   the decision engine, and for a file a local least-squares estimate of ``R_init ~ near +
   a (far - near)`` on the images low-passed at ``sigma / 2`` (regularised towards ``1 - M``).
   Where ``R_init`` took the near frame there is no diffusion to remove.

All images ``(H, W, 3)`` float32 in [0, 1]; masks ``(H, W)`` float32 in [0, 1], 1 = foreground.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from focusstack.maps.decision import decision_steps
from focusstack.ops import GuidedFilter, compose, linear_to_srgb, luminance, srgb_to_linear
from focusstack.errors import StackError, UsageError
from focusstack.refinement.diffusion import EPSILON, diffusion_component, gaussian, initial_synthesis
from focusstack.refinement.features import fsb_input, keb_input

MASK_SOURCES = ("auto", "fsb", "decision")
SIGMA_SOURCES = ("auto", "keb", "classical")
R_INIT_METHODS = ("decision", "eq9")
ORDERS = ("auto", "given")



@dataclass(frozen=True)
class RefineConfig:
    """Defaults of ``focusstack refine-tr`` (the CLI help reads them)."""

    #: Where the mask comes from: auto (FSB when trained weights exist, else the decision map),
    #: fsb (error without weights), decision (the decision engine's map).
    mask_source: str = "auto"
    #: Where sigma comes from: auto (the classical fit when its error has a minimum inside the
    #: searched range, else the KEB when trained weights exist), keb, classical. See estimate_sigma.
    sigma_source: str = "auto"
    #: R_init without --init: the decision engine's output, or Eq. 9 with the mask.
    r_init: str = "decision"
    #: Near/far order: auto (from the pixels), given (the arguments are near first).
    order: str = "auto"
    #: With ``order="auto"`` on a pair, the order's confidence (refinement.ordering) below which
    #: the order counts as unsupported: the pair is not refined (the output is R_init), with a
    #: warning and ``"refined": false`` in --json. Measured: the 3 flips on devTR's 12 pairs had
    #: 0.24-0.40, every right order on BetaFusion's 10 real pairs >= 0.48 (docs/quality.md).
    min_order_confidence: float = 0.45
    #: FSB and KEB run at a size whose long side is at most this (px); sigma is scaled back.
    work_size: int = 512
    #: Guided-filter boundary refinement: radius as a fraction of the shorter side (>= 2 px), eps.
    guide_radius: float = 0.006
    guide_eps: float = 1e-4
    #: Eq. 13's epsilon.
    epsilon: float = EPSILON
    #: Do the diffusion elimination in linear light (sRGB decoded), where defocus blur adds
    #: light linearly; False: on the encoded values, as the paper's equations are written.
    linear_light: bool = True
    fsb_weights: Path | None = None
    keb_weights: Path | None = None
    overwrite: bool = False
    max_pixels: int = 0  # 0: focusstack.config default
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("mask_source", MASK_SOURCES), ("sigma_source", SIGMA_SOURCES), ("r_init", R_INIT_METHODS), ("order", ORDERS)):
            v = getattr(self, name)
            if v not in allowed:
                raise UsageError(f"--{name.replace('_', '-')} {v!r} is not known", expected=" | ".join(allowed), actual=repr(v),
                                 fix=f"pass one of {', '.join(allowed)}")
        if isinstance(self.work_size, bool) or not isinstance(self.work_size, int) or self.work_size < 64:
            raise UsageError("--work-size must be at least 64 px", expected="an integer >= 64", actual=repr(self.work_size),
                             fix=f"pass --work-size {RefineConfig.__dataclass_fields__['work_size'].default} (the default) or another value >= 64")
        if not 0 <= self.guide_radius < 0.5 or self.guide_eps <= 0:
            raise UsageError("guide_radius must be in [0, 0.5) and guide_eps > 0", expected="0 <= guide_radius < 0.5, guide_eps > 0",
                             actual=f"{self.guide_radius}, {self.guide_eps}", fix="keep the defaults")
        if not 0.0 <= self.min_order_confidence <= 1.0:
            raise UsageError("min_order_confidence must be in [0, 1]", expected="0 <= min_order_confidence <= 1",
                             actual=str(self.min_order_confidence), fix="keep the default (0.45); 0 refines whatever the order's confidence")
        if not self.epsilon > 0:
            raise UsageError("epsilon must be > 0", expected="a positive number", actual=str(self.epsilon), fix="keep the default")


# --------------------------------------------------------------------------------------------
# pieces


def _work_scale(shape: tuple[int, int], work_size: int) -> float:
    return min(1.0, work_size / max(shape))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)


def refine_boundary(prob: np.ndarray, near: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided-filter boundary refinement (the CRF substitute, see the module docstring):
    ``(H, W)`` probability in [0, 1] and ``(H, W, 3)`` near frame -> ``(H, W)`` float32 in [0, 1]."""
    if radius < 1:
        return prob.astype(np.float32)
    q = GuidedFilter(luminance(near), radius, eps)(prob.astype(np.float32))
    return np.clip(q, 0.0, 1.0)


def fsb_mask(model, near: np.ndarray, far: np.ndarray, work_size: int) -> np.ndarray:  # noqa: ANN001
    """The FSB's foreground probability ``(H, W)`` float32 in [0, 1] at the frames' size."""
    import torch

    h, w = near.shape[:2]
    s = _work_scale((h, w), work_size)
    x = torch.from_numpy(fsb_input(_resize(near, s), _resize(far, s)))[None]
    with torch.inference_mode():
        p = torch.sigmoid(model(x))[0, 0].numpy()
    if p.shape != (h, w):
        p = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)
    return p.astype(np.float32)


def keb_sigma(model, near: np.ndarray, far: np.ndarray, mask: np.ndarray, work_size: int) -> float:  # noqa: ANN001
    """The KEB's sigma (px, at the frames' resolution) of the foreground's blur in ``far``."""
    import torch

    s = _work_scale(near.shape[:2], work_size)
    bank = tuple(getattr(getattr(model, "cfg", None), "bank", ())) or None
    args = (_resize(near, s), _resize(far, s), _resize(mask, s))
    x = torch.from_numpy(keb_input(*args, bank) if bank else keb_input(*args))[None]
    with torch.inference_mode():
        sigma = float(model(x)[0])
    return sigma / s


def classical_fit(near: np.ndarray, far: np.ndarray, mask: np.ndarray, work_size: int = 512) -> tuple[float, bool]:
    """The ``sigma`` (px, frames' resolution) whose Gaussian blur of the near frame best matches
    the far frame (mean squared error) inside the foreground, away from its edge (the mask
    eroded by ``2 sigma + 2`` px), on a log grid from 0.25 to 24 px at the working size.

    Returns ``(sigma, bracketed)``: ``bracketed`` is True when the error has a minimum strictly
    inside the range searched, i.e. a larger sigma was tried and fitted worse. The search stops
    where the eroded mask has fewer than 64 px, so a small foreground may end the search before
    the true sigma (``bracketed`` False: the fit is a lower bound). ``(0.0, False)`` when the
    mask has no interior."""
    s = _work_scale(near.shape[:2], work_size)
    n, f, m = _resize(near, s), _resize(far, s), _resize(mask, s) > 0.5
    best, best_err, last = 0.0, np.inf, 0.0
    for sig in np.geomspace(0.25, 24.0, 48):
        r = int(np.ceil(2 * sig + 2))
        inner = cv2.erode(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool)
        if inner.sum() < 64:
            break
        last = float(sig)
        err = float(np.mean((gaussian(n, float(sig)) - f)[inner] ** 2))
        if err < best_err:
            best, best_err = float(sig), err
    return best / s, bool(0.0 < best < last)


def classical_sigma(near: np.ndarray, far: np.ndarray, mask: np.ndarray, work_size: int = 512) -> float:
    """Fallback sigma (px, frames' resolution): :func:`classical_fit`'s sigma, 0 when the mask
    has no interior."""
    return classical_fit(near, far, mask, work_size)[0]


def estimate_sigma(near: np.ndarray, far: np.ndarray, mask: np.ndarray, source: str, keb, work_size: int = 512) -> tuple[float, str]:  # noqa: ANN001
    """The PSF sigma (px, frames' resolution) of the foreground's blur in ``far``, and where it
    came from (``"classical"`` or ``"keb"``).

    ``source``: ``"keb"`` (the KEB, ``keb`` must be a loaded network), ``"classical"``
    (:func:`classical_fit`), or ``"auto"``: the classical fit when it is *bracketed* (the
    foreground interior is large enough to see the error rise past the optimum), else the KEB
    when ``keb`` is given, else the classical lower bound. Why the fit comes first: both frames
    are given, so the fit measures sigma directly on the foreground's own pixels, while the KEB
    regresses it from features; on the rendered 2-frame validation set the fit's mean relative
    error is 0.18 against the KEB's 0.25, and Eq. 13-15 gain +1.39 dB in the 16 px band with the
    fit against +0.40 dB with the KEB (docs/refine-tr.md). The KEB stays the answer where the
    fit cannot see a minimum (a thin or small foreground).
    """
    if source == "keb":
        if keb is None:
            raise ValueError("sigma source 'keb' needs a loaded KEB")
        return keb_sigma(keb, near, far, mask, work_size), "keb"
    sigma, bracketed = classical_fit(near, far, mask, work_size)
    if source == "auto" and not bracketed and keb is not None:
        return keb_sigma(keb, near, far, mask, work_size), "keb"
    return sigma, "classical"


def far_share_estimate(
    r_init: np.ndarray, near: np.ndarray, far: np.ndarray, prior: np.ndarray, scale: float = 0.0, radius: int = 3, lam: float = 1e-4
) -> np.ndarray:
    """Per-pixel share ``a`` in [0, 1] of the far frame in ``r_init ~ near + a (far - near)``:
    box-window least squares over the channels, regularised towards ``prior`` with weight
    ``lam`` (a flat region, where near = far, keeps the prior). ``(H, W)`` float32.

    ``scale`` > 0 (px): fit the three images low-passed by a Gaussian of that sigma, in a window
    of radius ``max(radius, 2 scale)``. The diffusion component is smooth (a blur of ``sigma``),
    so what Eq. 15 needs is the far frame's share of ``r_init``'s *low* frequencies; a
    reconstruction-type fusion (a Laplacian pyramid) takes the far frame's fine texture but
    blends the coarse levels, and the plain fit, led by the texture, calls it all far."""
    if scale > 0:
        k = 2 * int(np.ceil(3 * scale)) + 1
        r_init, near, far = (cv2.GaussianBlur(np.asarray(x, np.float32), (k, k), scale, borderType=cv2.BORDER_REFLECT_101) for x in (r_init, near, far))
        radius = max(radius, int(round(2 * scale)))
    d = (far - near).astype(np.float32)
    e = (r_init - near).astype(np.float32)
    size = (2 * radius + 1, 2 * radius + 1)
    num = cv2.boxFilter((d * e).sum(axis=2), cv2.CV_32F, size) + lam * prior
    den = cv2.boxFilter((d * d).sum(axis=2), cv2.CV_32F, size) + lam
    return np.clip(num / den, 0.0, 1.0).astype(np.float32)


def share_scale(sigma: float) -> float:
    """The low-pass scale (px) of :func:`far_share_estimate` for a PSF of ``sigma`` px: half of
    it, at least 1 px (on 60 rendered pairs the band gain of a refined Laplacian fusion was
    +0.08 dB with sigma / 2, -0.06 with sigma, -0.06 without the low-pass)."""
    return max(1.0, 0.5 * float(sigma))


@dataclass
class PairResult:
    """Everything :func:`refine_pair` computed. ``refined``/``r_init``: ``(H, W, 3)`` float32 in
    [0, 1]; ``diffusion``: ``(H, W, 3)`` float32 signed (what was subtracted, after ``far_share``);
    ``mask``: ``(H, W)`` float32 in [0, 1] (near frame's foreground); ``sigma_px``."""

    refined: np.ndarray
    r_init: np.ndarray
    diffusion: np.ndarray
    mask: np.ndarray
    sigma_px: float
    info: dict = field(default_factory=dict)


def refine_pair(
    near: np.ndarray,
    far: np.ndarray,
    config: RefineConfig = RefineConfig(),
    *,
    init: np.ndarray | None = None,
    decision_weights: np.ndarray | None = None,
    fsb=None,  # noqa: ANN001  (a loaded FSB module, or None for the fallback)
    keb=None,  # noqa: ANN001
) -> PairResult:
    """Refine the transition region of one near/far pair (steps 2-6 of the module docstring).

    Args:
        near, far: ``(H, W, 3)`` float32 in [0, 1], already ordered.
        init: ``(H, W, 3)`` float32 in [0, 1], another method's fusion to refine, or None.
        decision_weights: ``(2, H, W)`` float32 soft decision maps (near, far) of the decision
            engine, or None to compute them when needed.
        fsb, keb: loaded networks (``torch.nn.Module``) or None for the classical fallbacks.
    """
    if near.shape != far.shape or near.ndim != 3 or near.shape[2] != 3:
        raise UsageError("near and far must be (H, W, 3) of one size", actual=f"{near.shape}, {far.shape}")
    info: dict = {}
    h, w = near.shape[:2]
    if decision_weights is None and (fsb is None or init is None and config.r_init == "decision"):
        decision_weights = decision_steps([near, far]).weights
    # 2-3. mask
    if fsb is not None:
        prob = fsb_mask(fsb, near, far, config.work_size)
        radius = max(2, int(round(config.guide_radius * min(h, w))))
        mask = refine_boundary(prob, near, radius, config.guide_eps)
        info["mask_source"] = "fsb"
        info["boundary_refinement"] = {"method": "guided filter (CRF substitute)", "radius_px": radius, "eps": config.guide_eps}
    else:
        mask = decision_weights[0].astype(np.float32)
        info["mask_source"] = "decision-map"
    # 4. sigma
    sigma, info["sigma_source"] = estimate_sigma(near, far, mask, config.sigma_source, keb, config.work_size)
    # 5. R_init and the far frame's share of it
    if init is not None:
        if init.shape != near.shape:
            raise StackError("--init must have the frames' size", expected=str(near.shape[:2]), actual=str(init.shape[:2]))
        r_init = init.astype(np.float32)
        share = far_share_estimate(r_init, near, far, 1.0 - mask, share_scale(sigma))
        info["r_init"] = "file"
    elif config.r_init == "decision":
        r_init = compose([near, far], decision_weights)
        share = decision_weights[1].astype(np.float32)
        info["r_init"] = "decision-engine"
    else:
        r_init = initial_synthesis(near, far, mask)
        share = None
        info["r_init"] = "eq9"
    # 6. diffusion elimination
    dec = srgb_to_linear if config.linear_light else (lambda x: x)
    enc = linear_to_srgb if config.linear_light else (lambda x: np.clip(x, 0.0, 1.0))
    s = diffusion_component(dec(near), dec(far), mask, sigma, config.epsilon)
    if share is not None:
        s *= share[..., None]
    refined = enc(dec(r_init) - s).astype(np.float32)
    s = (r_init - refined).astype(np.float32)  # what was removed, in the output's encoding
    info["sigma_px"] = round(float(sigma), 4)
    info["linear_light"] = config.linear_light
    return PairResult(refined, r_init, s, mask, float(sigma), info)
