"""Network inputs of the transition-region refinement, shared by training and inference.

* :func:`fsb_input`: the FSB's 7 channels from a near/far pair.
* :func:`keb_input`: the KEB's 7 channels from a sharp view, a blurred view and a mask.
"""

from __future__ import annotations

import numpy as np

from focusstack.engines.focus import focus_measure

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


def keb_input(sharp: np.ndarray, blurred: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` sharp and blurred views in [0, 1] and an ``(H, W)`` mask in [0, 1]
    -> ``(7, H, W)`` float32."""
    sharp, blurred = _check_rgb(sharp, "sharp"), _check_rgb(blurred, "blurred")
    mask = np.asarray(mask, np.float32)
    if sharp.shape != blurred.shape or mask.shape != sharp.shape[:2]:
        raise ValueError(f"shapes differ: sharp {sharp.shape}, blurred {blurred.shape}, mask {mask.shape}")
    return np.concatenate([sharp.transpose(2, 0, 1), blurred.transpose(2, 0, 1), mask[None]], axis=0)
