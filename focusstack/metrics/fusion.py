"""No-reference fusion metrics: a fused image scored against its N source frames (no GT).

All three work on luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of ``(H, W, 3)`` float images in
[0, 1] (a ``(H, W)`` image is taken as luma already), in torch float32, vectorised. Each is the
published two-source metric when N = 2 and extends it to N >= 1 sources as follows (also in
docs/eval.md):

* :func:`q_mi` (Hossny et al. 2008): ``Q^MI = 2 * mean_k [ 2 MI(S_k, F) / (H(S_k) + H(F)) ]``.
  For N = 2 this is exactly ``2 [MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]``. Entropies
  from 256-bin histograms of the luma quantised to 8 bits. Range [0, 2]; 2 when F equals every
  source.
* :func:`q_abf` (Xydeas and Petrovic 2000): per source, Sobel edge strength ``g`` and orientation
  ``alpha``; the preservation ``Q^SF = Q_g(G) Q_a(A)`` with the standard sigmoid constants
  (Gamma_g 0.9994, kappa_g -15, sigma_g 0.5; Gamma_a 0.9879, kappa_a -22, sigma_a 0.8), weighted
  by the source's edge strength ``w_k = g_k^L`` with L = 1:
  ``Q = sum_k sum_px Q^{S_k F} w_k / sum_k sum_px w_k``. Its maximum with these constants is
  :data:`QABF_MAX` (0.9748), reached when F keeps every source's edges.
* :func:`q_y` (Yang et al. 2008): local SSIM maps (7x7 Gaussian window, sigma 1.5, valid region).
  Where all sources are alike (the smallest pairwise SSIM(S_i, S_j | w) >= 0.75) the score is
  the saliency-weighted sum ``sum_k lambda_k SSIM(S_k, F | w)`` with ``lambda_k`` proportional to
  the local variance of ``S_k``; elsewhere ``max_k SSIM(S_k, F | w)``. Mean over windows;
  1 when F equals every source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from focusstack.metrics.registry import Unavailable

# Xydeas & Petrovic constants
GAMMA_G, KAPPA_G, SIGMA_G = 0.9994, -15.0, 0.5
GAMMA_A, KAPPA_A, SIGMA_A = 0.9879, -22.0, 0.8
QABF_L = 1.0
#: Q^AB/F of a perfect fusion (G = 1, A = 1) with the standard constants.
QABF_MAX = GAMMA_G / (1 + math.exp(KAPPA_G * (1 - SIGMA_G))) * GAMMA_A / (1 + math.exp(KAPPA_A * (1 - SIGMA_A)))

#: Yang et al.: sources count as "alike" in a window when their SSIM is at least this.
QY_THRESHOLD = 0.75
QY_WINDOW, QY_SIGMA = 7, 1.5
MI_BINS = 256

_LUMA = (0.299, 0.587, 0.114)


def luma(img) -> torch.Tensor:  # noqa: ANN001
    """``(H, W, 3)`` or ``(H, W)`` array/tensor in [0, 1] -> ``(H, W) float32`` luma in [0, 1]."""
    t = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img))
    t = t.detach().to(torch.float32)
    if t.ndim == 3:
        if t.shape[-1] == 1:
            return t[..., 0]
        if t.shape[-1] != 3:
            raise ValueError(f"expected (H, W, 3) or (H, W), got {tuple(t.shape)}")
        w = torch.tensor(_LUMA, dtype=torch.float32)
        return (t * w).sum(-1)
    if t.ndim != 2:
        raise ValueError(f"expected (H, W, 3) or (H, W), got {tuple(t.shape)}")
    return t


def _prepare(sources: Sequence, fused) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    if len(sources) < 1:
        raise ValueError("need at least one source frame")
    f = luma(fused)
    s = torch.stack([luma(x) for x in sources])
    if s.shape[1:] != f.shape:
        raise ValueError(f"sources {tuple(s.shape[1:])} and fused image {tuple(f.shape)} differ in size")
    return s, f


# --------------------------------------------------------------------------------------------
# Q^MI


def _entropy(p: torch.Tensor) -> torch.Tensor:
    p = p[p > 0]
    return -(p * torch.log2(p)).sum()


def q_mi(sources: Sequence, fused, bins: int = MI_BINS) -> float:  # noqa: ANN001
    """Normalised mutual information (Hossny et al.), extended to N sources.

    Args:
        sources: N >= 1 frames, each ``(H, W, 3)`` or ``(H, W)`` float in [0, 1].
        fused: ``(H, W, 3)`` or ``(H, W)`` float in [0, 1].
        bins: histogram bins per image (levels after quantisation).

    Returns:
        ``2 * mean_k NMI(S_k, F)`` in [0, 2]; 2 when F equals every source.
    """
    s, f = _prepare(sources, fused)
    q = lambda t: (t.clamp(0, 1) * (bins - 1) + 0.5).floor().to(torch.int64).reshape(-1)  # noqa: E731
    fi = q(f)
    pf = torch.bincount(fi, minlength=bins).to(torch.float64) / fi.numel()
    hf = _entropy(pf)
    terms = []
    for k in range(s.shape[0]):
        si = q(s[k])
        joint = torch.bincount(si * bins + fi, minlength=bins * bins).to(torch.float64) / fi.numel()
        ps = joint.view(bins, bins).sum(1)
        hs = _entropy(ps)
        mi = hs + hf - _entropy(joint)
        denom = hs + hf
        # two constant images carry the same (zero) information: a perfect match
        terms.append(1.0 if float(denom) == 0 else float(2 * mi / denom))
    return 2.0 * float(np.mean(terms))


# --------------------------------------------------------------------------------------------
# Q^AB/F


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _sobel(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W) float32`` -> Sobel edge strength (>= 0) and orientation (radians in
    (-pi/2, pi/2]), each ``(B, H, W) float32`` (replicated borders)."""
    k = torch.stack([_SOBEL_X, _SOBEL_X.T])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(t[:, None], (1, 1, 1, 1), mode="replicate"), k)
    sx, sy = g[:, 0], g[:, 1]
    strength = torch.sqrt(sx * sx + sy * sy)
    # orientation of the edge in (-pi/2, pi/2]; a vertical gradient (sx = 0) is pi/2
    angle = torch.where(sx == 0, torch.full_like(sx, math.pi / 2), torch.atan(sy / torch.where(sx == 0, torch.ones_like(sx), sx)))
    return strength, angle


def qabf_preservation(g_ratio: torch.Tensor, a_ratio: torch.Tensor) -> torch.Tensor:
    """``Q_g(G) * Q_a(A)`` with the standard constants.

    Args:
        g_ratio, a_ratio: float tensors of one shape, values in [0, 1].

    Returns:
        Same shape and dtype, values in [0, QABF_MAX].
    """
    qg = GAMMA_G / (1 + torch.exp(KAPPA_G * (g_ratio - SIGMA_G)))
    qa = GAMMA_A / (1 + torch.exp(KAPPA_A * (a_ratio - SIGMA_A)))
    return qg * qa


def q_abf(sources: Sequence, fused) -> float:  # noqa: ANN001
    """Edge-preservation quality (Xydeas and Petrovic), extended to N sources.

    G (relative strength) is ``min(g_S, g_F) / max(g_S, g_F)`` (1 where both are 0); A (relative
    orientation) is ``1 - d / (pi/2)`` with ``d`` the angle between the two edge orientations,
    folded to [0, pi/2] (orientations pi apart are the same edge).

    Args:
        sources: N >= 1 frames, each ``(H, W, 3)`` or ``(H, W)`` float in [0, 1], H, W >= 3.
        fused: ``(H, W, 3)`` or ``(H, W)`` float in [0, 1].

    Returns:
        The score in [0, QABF_MAX]; higher is better.

    Raises:
        Unavailable: no source has any edge (the weights sum to zero).
    """
    s, f = _prepare(sources, fused)
    if min(f.shape) < 3:
        raise Unavailable("image too small (needs >= 3 px)")
    gs, a_s = _sobel(s)
    gf, af = _sobel(f[None])
    big = torch.maximum(gs, gf)
    g_ratio = torch.where(big > 0, torch.minimum(gs, gf) / torch.where(big > 0, big, torch.ones_like(big)), torch.ones_like(big))
    d = (a_s - af).abs()
    d = torch.minimum(d, math.pi - d)
    a_ratio = 1 - d / (math.pi / 2)
    q = qabf_preservation(g_ratio, a_ratio)
    w = gs.to(torch.float64) ** QABF_L
    total = float(w.sum())
    if total == 0:
        raise Unavailable("no edges in the source frames")
    return float((q.to(torch.float64) * w).sum() / total)


# --------------------------------------------------------------------------------------------
# Q^Y


def gauss1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, ``(size,) float32``."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def blur_valid(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """'Valid' Gaussian filter with the outer-product kernel of ``g`` (``(k,) float32``):
    ``(B, 1, H, W) float32`` -> ``(B, 1, H-k+1, W-k+1) float32``, any value range. Run as one grouped convolution over B channels (measured 2.7x
    faster on CPU than B single-channel images, 1.3x faster than two separable passes)."""
    k = g.numel()
    b = t.shape[0]
    w = (g[:, None] * g[None, :]).expand(b, 1, k, k).contiguous()
    return F.conv2d(t.reshape(1, b, *t.shape[2:]), w, groups=b).reshape(b, 1, t.shape[2] - k + 1, t.shape[3] - k + 1)


def q_y(sources: Sequence, fused) -> float:  # noqa: ANN001
    """Yang et al.'s SSIM-based fusion quality, extended to N sources (see the module docstring).

    Args:
        sources: N >= 1 frames, each ``(H, W, 3)`` or ``(H, W)`` float in [0, 1], H, W >= 7.
        fused: ``(H, W, 3)`` or ``(H, W)`` float in [0, 1].

    Returns:
        Mean over windows, at most 1 (identical images); higher is better.
    """
    s, f = _prepare(sources, fused)
    if min(f.shape) < QY_WINDOW:
        raise Unavailable(f"image too small (needs >= {QY_WINDOW} px)")
    n = s.shape[0]
    g = gauss1d(QY_WINDOW, QY_SIGMA)
    c1, c2 = 0.01**2, 0.03**2
    x = torch.cat([s, f[None]])  # (n + 1, H, W): sources, then F
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    stack = [x, x * x, s * f[None]]
    if pairs:
        ii = torch.tensor([p[0] for p in pairs])
        jj = torch.tensor([p[1] for p in pairs])
        stack.append(s[ii] * s[jj])
    allm = blur_valid(torch.cat(stack)[:, None], g)[:, 0]
    mu, sq = allm[: n + 1], allm[n + 1 : 2 * n + 2]
    sf = allm[2 * n + 2 : 3 * n + 2]
    var = (sq - mu * mu).clamp_min(0)
    mus, muf = mu[:n], mu[n]
    cov_sf = sf - mus * muf
    ssim_sf = ((2 * mus * muf + c1) * (2 * cov_sf + c2)) / ((mus**2 + muf**2 + c1) * (var[:n] + var[n] + c2))
    vs = var[:n]
    tot = vs.sum(0)
    lam = torch.where(tot > 0, vs / torch.where(tot > 0, tot, torch.ones_like(tot)), torch.full_like(vs, 1.0 / n))
    weighted = (lam * ssim_sf).sum(0)
    if pairs:
        cross = allm[3 * n + 2 :]
        cov_ss = cross - mus[ii] * mus[jj]
        ssim_ss = ((2 * mus[ii] * mus[jj] + c1) * (2 * cov_ss + c2)) / (
            (mus[ii] ** 2 + mus[jj] ** 2 + c1) * (vs[ii] + vs[jj] + c2)
        )
        alike = ssim_ss.min(0).values >= QY_THRESHOLD
        q = torch.where(alike, weighted, ssim_sf.max(0).values)
    else:
        q = weighted
    return float(q.to(torch.float64).mean())
