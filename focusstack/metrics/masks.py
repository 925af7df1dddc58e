"""Decision maps: mIoU against a GT mask, and the decision map a fused image implies.

A decision map is ``(H, W) int64``: at each pixel, the index of the source frame the fused image
takes it from (0 = the first / nearest frame). A binary mask (foreground of frame 0, as in
BetaFusion's ``-M`` files) is the decision map of a two-frame stack with 1 - mask.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from focusstack.metrics.fusion import luma


def miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean intersection over union over the classes present in ``pred`` or ``gt``.

    For two classes this is the mean of the foreground IoU and the background IoU.

    Args:
        pred: ``(H, W)`` integer labels (frame index per pixel).
        gt: ``(H, W)`` integer labels, same shape.

    Returns:
        mIoU in [0, 1]; 1 when the maps are equal.
    """
    p = np.asarray(pred).astype(np.int64).ravel()
    g = np.asarray(gt).astype(np.int64).ravel()
    if p.shape != g.shape:
        raise ValueError(f"masks differ in size: {np.shape(pred)} and {np.shape(gt)}")
    if p.size == 0:
        raise ValueError("empty masks")
    n = int(max(p.max(), g.max())) + 1
    conf = np.bincount(g * n + p, minlength=n * n).reshape(n, n)  # rows gt, cols pred
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    present = union > 0
    return float((inter[present] / union[present]).mean())


def labels_from_masks(masks: list[np.ndarray]) -> np.ndarray:
    """Per-frame masks (``(H, W)`` float/uint8, > 0.5 of the range where frame k is sharpest)
    -> ``(H, W) int64`` labels.

    One mask: a binary foreground mask of frame 0 -> labels 0 (mask set) and 1 (not set).
    K masks: the first k whose mask is set; pixels set in none go to the last frame.
    """
    if not masks:
        raise ValueError("no masks")
    bins = [np.asarray(m, dtype=np.float32) >= 0.5 for m in masks]
    if len(bins) == 1:
        return np.where(bins[0], 0, 1).astype(np.int64)
    stack = np.stack(bins)
    lab = np.argmax(stack, axis=0).astype(np.int64)
    lab[~stack.any(0)] = len(bins) - 1
    return lab


def implied_decision(sources: list, fused, sigma: float = 2.0) -> np.ndarray:  # noqa: ANN001
    """The frame each pixel of ``fused`` is taken from: ``argmin_k blur(|Y_F - Y_k|)``.

    Args:
        sources: N frames ``(H, W, 3)`` float in [0, 1].
        fused: ``(H, W, 3)`` float in [0, 1].
        sigma: Gaussian blur of the absolute luma difference in px (smooths noise and JPEG
            artefacts); ties go to the lower frame index.

    Returns:
        ``(H, W) int64`` labels in [0, N).
    """
    f = luma(fused)
    d = torch.stack([(luma(s) - f).abs() for s in sources])[:, None]  # (N, 1, H, W)
    r = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    d = F.conv2d(F.pad(d, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    d = F.conv2d(F.pad(d, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return d[:, 0].argmin(0).numpy().astype(np.int64)
