"""PSNR and SSIM on ``(H, W, 3)`` or ``(H, W)`` float arrays in [0, 1] (numpy or torch).

SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, data range 1, computed per channel and averaged ("valid" region only, like
scikit-image's ``gaussian_weights=True, use_sample_covariance=False``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_tensor(a) -> torch.Tensor:  # noqa: ANN001
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t.detach().to(torch.float64)


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images must share a shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got {tuple(a.shape)}")


def psnr(a, b, data_range: float = 1.0) -> float:  # noqa: ANN001
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    x, y = _as_tensor(a), _as_tensor(b)
    _check(x, y)
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a, b, data_range: float = 1.0) -> float:  # noqa: ANN001
    """Mean structural similarity in [-1, 1]; 1 for identical images."""
    x, y = _as_tensor(a), _as_tensor(b)
    _check(x, y)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    x = x.permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    y = y.permute(2, 0, 1)[:, None]
    g = _gauss()
    k = (g[:, None] * g[None, :])[None, None]
    if x.shape[-1] < 11 or x.shape[-2] < 11:
        raise ValueError(f"SSIM needs images of at least 11x11, got {tuple(x.shape[-2:])}")

    def f(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
