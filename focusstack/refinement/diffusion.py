"""Diffusion elimination (Liu et al., Eq. 13-15): remove the blurred foreground that spreads
over the background at the transition region (TR) of a near/far pair.

Imaging model (Eq. 3-8). With ``f`` the near-focus frame (sharp foreground), ``b`` the far-focus
frame (sharp background), ``M`` the foreground mask and ``K`` the Gaussian PSF of the
foreground's blur in the far frame, the far frame's background near the foreground carries a
*diffusion component*

    S = (1 - M) [(f M - b M) * K]                                            (Eq. 8)

(the smoothed colour difference between foreground and the hidden background behind it). The
hidden background ``b M`` is unknown; it is filled by normalised convolution of the visible
background (Eq. 13),

    b M  ~  M [((1 - M) b) * K] / [(1 - M) * K + eps],   eps = 1e-10,

so (Eq. 14)

    S_pd = (1 - M) [(f M - M ((1 - M) b) * K / ((1 - M) * K + eps)) * K],

and the result is ``R = R_init - S_pd`` (Eq. 15). Eq. 14 as printed omits the ``M`` on the
filled background; it must be there (the fill replaces ``b M``, and without it the blur would
also spread the background's own fill into ``S``).

``R_init`` may be any initial synthesis (Eq. 9 with the predicted mask, the decision engine's
output, another method's fusion): ``S_pd`` is subtracted from it where the mask says
background. All arrays are float64 internally (the normalised convolution divides tails of
Gaussians by tails of Gaussians; float32 would lose them a few sigma inside the mask).
"""

from __future__ import annotations

import numpy as np

from focusstack.ops import gaussian as ops_gaussian

#: The paper's epsilon in Eq. 13.
EPSILON = 1e-10


def gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur (Eq. 2) of an ``(H, W)`` or ``(H, W, C)`` array with ``sigma``
    px, kernel radius ``ceil(4 sigma)``, mirrored border; same dtype (float32/64) out.
    ``sigma <= 0`` returns a copy (:func:`focusstack.ops.gaussian` with ``truncate=4``)."""
    return ops_gaussian(x, sigma, truncate=4.0)


def _check(near: np.ndarray, far: np.ndarray, mask: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    near = np.asarray(near)
    far = np.asarray(far)
    mask = np.asarray(mask)
    if near.ndim != 3 or near.shape[2] != 3:
        raise ValueError(f"near must be (H, W, 3) float32 in [0, 1], got shape {near.shape}")
    if far.shape != near.shape:
        raise ValueError(f"far must match near {near.shape}, got {far.shape}")
    if mask.shape != near.shape[:2]:
        raise ValueError(f"mask must be (H, W) = {near.shape[:2]}, got {mask.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (px), got {sigma}")
    return near.astype(np.float64), far.astype(np.float64), np.clip(mask.astype(np.float64), 0.0, 1.0)


def fill_hidden_background(far: np.ndarray, mask: np.ndarray, sigma: float, eps: float = EPSILON) -> np.ndarray:
    """Eq. 13: ``((1 - M) b) * K / ((1 - M) * K + eps)``, the visible background ``b`` of the far
    frame spread under the mask by normalised convolution.

    Args:
        far: ``(H, W, 3)`` float in [0, 1]. mask: ``(H, W)`` float in [0, 1], 1 = foreground.
        sigma: PSF sigma in px.
    Returns:
        ``(H, W, 3)`` float64 (not multiplied by ``M``; 0 where no background is within reach).
    """
    inv = 1.0 - mask
    num = gaussian(far * inv[..., None], sigma)
    den = gaussian(inv, sigma)
    return num / (den[..., None] + eps)


def diffusion_component(near: np.ndarray, far: np.ndarray, mask: np.ndarray, sigma: float, eps: float = EPSILON) -> np.ndarray:
    """Eq. 14: the diffusion component ``S_pd``.

    Args:
        near: ``(H, W, 3)`` float in [0, 1], the near-focus frame ``f`` (sharp foreground).
        far: ``(H, W, 3)`` float in [0, 1], the far-focus frame ``b`` (sharp background).
        mask: ``(H, W)`` float in [0, 1], the foreground mask ``M`` of the near frame.
        sigma: sigma (px) of the Gaussian PSF ``K`` of the foreground's blur in the far frame.
        eps: Eq. 13's epsilon (the paper's 1e-10).
    Returns:
        ``(H, W, 3)`` float32, signed (roughly in [-1, 1]); 0 where ``M = 1`` and farther than
        about ``4 sigma`` from the foreground.
    """
    near, far, mask = _check(near, far, mask, sigma)
    if sigma <= 0:
        return np.zeros(near.shape, np.float32)
    m3 = mask[..., None]
    hidden = fill_hidden_background(far, mask, sigma, eps) * m3
    s = gaussian(near * m3 - hidden, sigma) * (1.0 - m3)
    return s.astype(np.float32)


def eliminate_diffusion(
    r_init: np.ndarray, near: np.ndarray, far: np.ndarray, mask: np.ndarray, sigma: float, eps: float = EPSILON
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 15: ``R = R_init - S_pd``.

    Args:
        r_init: ``(H, W, 3)`` float in [0, 1], the initial synthesis (Eq. 9 or any other fusion).
        near, far, mask, sigma, eps: as in :func:`diffusion_component`.
    Returns:
        ``(R (H, W, 3) float32 in [0, 1], S_pd (H, W, 3) float32 signed)``.
    """
    r_init = np.asarray(r_init)
    if r_init.shape != np.asarray(near).shape:
        raise ValueError(f"r_init must match the frames {np.asarray(near).shape}, got {r_init.shape}")
    s = diffusion_component(near, far, mask, sigma, eps)
    r = np.clip(r_init.astype(np.float32) - s, 0.0, 1.0)
    return r, s


def initial_synthesis(near: np.ndarray, far: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 9: ``R_init = M f + (1 - M) b``; ``(H, W, 3)`` x2 and ``(H, W)`` in [0, 1] -> ``(H, W, 3)`` float32."""
    near, far, mask = _check(near, far, mask, 0.0)
    m3 = mask[..., None]
    return (m3 * near + (1.0 - m3) * far).astype(np.float32)
