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
from focusstack.metrics.registry import Unavailable

#: Blurred luma difference (range 1) below which two frames count as alike at a pixel: one
#: 8-bit level.
IMPLIED_TOL = 1.0 / 255


def miou(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean intersection over union over the classes present in ``pred`` or ``gt``.

    For two classes this is the mean of the foreground IoU and the background IoU.

    Args:
        pred: ``(H, W)`` integer labels (frame index per pixel).
        gt: ``(H, W)`` integer labels, same shape.
        valid: optional ``(H, W)`` bool; only these pixels count (see :func:`implied_decision`).

    Returns:
        mIoU in [0, 1]; 1 when the maps are equal.

    Raises:
        Unavailable: no pixel to score (``valid`` is all False).
    """
    if np.shape(pred) != np.shape(gt):
        raise ValueError(f"masks differ in size: {np.shape(pred)} and {np.shape(gt)}")
    p = np.asarray(pred).astype(np.int64).ravel()
    g = np.asarray(gt).astype(np.int64).ravel()
    if valid is not None:
        keep = np.asarray(valid, bool).ravel()
        p, g = p[keep], g[keep]
    if p.size == 0:
        raise Unavailable("no pixel where the frames differ: any decision map is right")
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


def _blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, H, W)`` with replicated borders (separable)."""
    r = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    d = t[:, None]
    d = F.conv2d(F.pad(d, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    d = F.conv2d(F.pad(d, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return d[:, 0]


def implied_decision(sources: list, fused, sigma: float = 2.0) -> np.ndarray:  # noqa: ANN001
    """The frame each pixel of ``fused`` is taken from: ``argmin_k blur(|Y_F - Y_k|)``.

    Args:
        sources: N frames ``(H, W, 3)`` float in [0, 1].
        fused: ``(H, W, 3)`` float in [0, 1].
        sigma: Gaussian blur in px of the luma differences (smooths noise and JPEG artefacts).

    Returns:
        ``(H, W) int64`` frame indices in [0, N).
    """
    f = luma(fused)
    ys = torch.stack([luma(s) for s in sources])
    return _blur((ys - f).abs(), sigma).argmin(0).numpy().astype(np.int64)


def decision_miou(pred: np.ndarray, gt: np.ndarray, sources: list, sigma: float = 2.0, tol: float = IMPLIED_TOL) -> float:
    """mIoU of a decision map, counting only decisions that matter.

    Where two frames look the same, choosing either is right. So, with the blurred luma
    differences of the frames (Gaussian ``sigma`` px, range 1):

    * a pixel where all frames are alike (``blur(max_k Y_k - min_k Y_k) < tol``: flat areas,
      regions sharp in every frame, identical frames) is left out;
    * a predicted frame p that is alike the GT's frame g at that pixel
      (``blur(|Y_p - Y_g|) < tol``) counts as g.

    Both tests look at the frames only, never at the output.

    Args:
        pred, gt: ``(H, W) int64`` frame indices in [0, N).
        sources: the N frames, ``(H, W, 3)`` float in [0, 1].

    Raises:
        Unavailable: the frames are alike everywhere (no decision to score).
    """
    ys = torch.stack([luma(s) for s in sources])
    n = ys.shape[0]
    p = torch.from_numpy(np.asarray(pred, np.int64)).clamp(0, n - 1)
    g = torch.from_numpy(np.asarray(gt, np.int64)).clamp(0, n - 1)
    valid = _blur((ys.max(0).values - ys.min(0).values)[None], sigma)[0] >= tol
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    same = p == g
    if pairs:
        diffs = _blur(torch.stack([(ys[i] - ys[j]).abs() for i, j in pairs]), sigma)  # (P, H, W)
        index = torch.full((n, n), -1, dtype=torch.int64)
        for k, (i, j) in enumerate(pairs):
            index[i, j] = index[j, i] = k
        pk = index[p, g]  # (H, W): pair index, -1 where p == g
        gathered = torch.gather(diffs, 0, pk.clamp_min(0)[None])[0]
        same = same | ((pk >= 0) & (gathered < tol))
    relabelled = torch.where(same, g, p)
    return miou(relabelled.numpy(), np.asarray(gt), valid.numpy())
