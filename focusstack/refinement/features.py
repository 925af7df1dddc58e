"""Network inputs of the transition-region refinement, shared by training and inference.

* :func:`fsb_input`: the FSB's 7 channels from a near/far pair.
* :func:`keb_input`: the KEB's channels from a sharp view, a blurred view and a mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from focusstack.ops import focus_measure, luminance

#: Focus measure scales for the FSB's focus-difference channel (fine scales: the renders and
#: BetaFusion pairs are a few hundred px, see docs/decision.md on the scale choice).
FOCUS_SCALES = (1, 2, 4)
#: The difference of log focus energies is divided by this before the tanh.
FOCUS_TEMPERATURE = 2.0


def _check_rgb(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) float32 in [0, 1], got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def focus_difference(near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` x2 float32 in [0, 1] -> ``(H, W)`` float32 in (-1, 1):
    ``tanh((F_near - F_far) / T)`` with ``F`` the decision engine's multi-scale log focus measure
    (positive where the near frame is sharper)."""
    near, far = _check_rgb(near, "near"), _check_rgb(far, "far")
    d = focus_measure(near, scales=FOCUS_SCALES) - focus_measure(far, scales=FOCUS_SCALES)
    return np.tanh(d / np.float32(FOCUS_TEMPERATURE)).astype(np.float32)


def fsb_input(near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Near and far frames ``(H, W, 3)`` float32 in [0, 1] -> ``(7, H, W)`` float32:
    near RGB, far RGB (in [0, 1]) and :func:`focus_difference` (in [-1, 1])."""
    near, far = _check_rgb(near, "near"), _check_rgb(far, "far")
    if near.shape != far.shape:
        raise ValueError(f"near and far must share one shape, got {near.shape} and {far.shape}")
    fd = focus_difference(near, far)
    return np.concatenate([near.transpose(2, 0, 1), far.transpose(2, 0, 1), fd[None]], axis=0)


#: Sigmas (px) of the KEB's re-blur residual bank (see :func:`keb_input`).
KEB_BANK = (0.5, 1.0, 1.5, 2.2, 3.2, 4.6, 6.6, 9.5)
#: Gain of the residual channels (residuals of a few percent become O(0.1-1)).
KEB_BANK_GAIN = 10.0


def reblur_residuals(sharp: np.ndarray, blurred: np.ndarray, bank: tuple[float, ...] = KEB_BANK) -> np.ndarray:
    """``(len(bank), H, W)`` float32 >= 0: ``10 |G_s * Y_sharp - Y_blurred|`` for each ``s`` in
    ``bank`` (``Y`` the luminance, ``G_s`` a Gaussian of sigma ``s`` px). Where the blurred view is
    the sharp one blurred by ``sigma``, the channel with ``s`` nearest ``sigma`` is smallest."""
    ys, yb = luminance(sharp), luminance(blurred)
    out = np.empty((len(bank), *ys.shape), np.float32)
    for i, s in enumerate(bank):
        r = int(np.ceil(4 * s))
        g = cv2.GaussianBlur(ys, (2 * r + 1, 2 * r + 1), float(s), borderType=cv2.BORDER_REFLECT_101)
        out[i] = np.abs(g - yb) * np.float32(KEB_BANK_GAIN)
    return out


def keb_input(sharp: np.ndarray, blurred: np.ndarray, mask: np.ndarray, bank: tuple[float, ...] = KEB_BANK) -> np.ndarray:
    """``(H, W, 3)`` sharp and blurred views in [0, 1] and an ``(H, W)`` mask in [0, 1]
    -> ``(7 + len(bank), H, W)`` float32: sharp RGB, blurred RGB, mask, and the re-blur
    residual bank (:func:`reblur_residuals`). The bank makes sigma a comparison the network can
    learn in a few hundred CPU steps; from the raw views alone a KEB of this size stayed at the
    median sigma after 400 steps (measured)."""
    sharp, blurred = _check_rgb(sharp, "sharp"), _check_rgb(blurred, "blurred")
    mask = np.asarray(mask, np.float32)
    if sharp.shape != blurred.shape or mask.shape != sharp.shape[:2]:
        raise ValueError(f"shapes differ: sharp {sharp.shape}, blurred {blurred.shape}, mask {mask.shape}")
    base = [sharp.transpose(2, 0, 1), blurred.transpose(2, 0, 1), mask[None]]
    return np.concatenate(base + [reblur_residuals(sharp, blurred, tuple(bank))], axis=0)
