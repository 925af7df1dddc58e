"""VAEEDOF Figure 4: how hard each patch of an image is to fuse.

The image is cut into a grid of non-overlapping ``size x size`` patches (a partial row or column
at the right/bottom edge is left out). A patch's difficulty is the gap between the GT patch and
the best input patch::

    difficulty = 1 - max_k SSIM(GT patch, frame_k patch)

SSIM as in :mod:`focusstack.metrics.basic` (11x11 Gaussian, sigma 1.5, data range 1, valid
region, mean over RGB). 0: some frame already holds the GT patch (nothing to fuse); large: no
frame holds it (the information is missing, e.g. behind a blurred foreground edge).
"""

from __future__ import annotations

import torch

from focusstack.metrics.basic import _gauss
from focusstack.metrics.fusion import blur_valid

DEFINITION = "1 - max_k SSIM(GT patch, frame_k patch)"


def patches(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(C, H, W)`` tensor -> ``(P, C, size, size)``, same dtype and values; the patches of a
    row-major grid, partial edge patches dropped (``P = (H // size) * (W // size)``)."""
    c, h, w = img.shape
    ny, nx = h // size, w // size
    if ny == 0 or nx == 0:
        return img.new_zeros((0, c, size, size))
    t = img[:, : ny * size, : nx * size].reshape(c, ny, size, nx, size)
    return t.permute(1, 3, 0, 2, 4).reshape(ny * nx, c, size, size).contiguous()


def patch_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each pair of patches.

    Args:
        x, y: ``(P, C, S, S) float32`` in [0, 1], S >= 11.

    Returns:
        ``(P,) float32`` in [-1, 1].
    """
    p, c, s, _ = x.shape
    if s < 11:
        raise ValueError(f"patches must be at least 11 px, got {s}")
    g = _gauss().to(torch.float32)
    xx = x.reshape(p * c, 1, s, s)
    yy = y.reshape(p * c, 1, s, s)
    m = blur_valid(torch.cat([xx, yy, xx * xx, yy * yy, xx * yy]), g)
    n = p * c
    mx, my, sxx, syy, sxy = m[:n], m[n : 2 * n], m[2 * n : 3 * n], m[3 * n : 4 * n], m[4 * n :]
    vx, vy, cxy = sxx - mx * mx, syy - my * my, sxy - mx * my
    c1, c2 = 0.01**2, 0.03**2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.reshape(p, c, -1).mean(dim=(1, 2))


def difficulty(gt: torch.Tensor, frames: torch.Tensor, size: int) -> torch.Tensor:
    """Difficulty of each patch.

    Args:
        gt: ``(3, H, W) float32`` in [0, 1].
        frames: ``(N, 3, H, W) float32`` in [0, 1], the input frames.
        size: patch side in px (>= 11).

    Returns:
        ``(P,) float32``, ``1 - max_k SSIM``, in [0, 2] (0 = a frame holds the GT patch), in
        the order of :func:`patches`.
    """
    g = patches(gt, size)
    best = None
    for k in range(frames.shape[0]):
        s = patch_ssim(g, patches(frames[k], size))
        best = s if best is None else torch.maximum(best, s)
    assert best is not None
    return 1 - best
