"""The focus order of a stack's frames, from a coarse grid of sharpness per frame.

* :func:`energy_map` / :func:`focus_grid`: a coarse grid of local Laplacian energy of one frame
  (its sharpness per region), from a small grey image; one small array per frame (about 96 x 72)
  is all pass 1 keeps. The maps are warped into one geometry before they are compared, so that
  focus breathing does not move regions between cells.
* :func:`focus_order`: along the true focus order every region's sharpness rises to one peak
  and falls again; the order whose per-region profiles are closest to unimodal is the focus
  order (candidates from spectral seriation and 2-opt on the grids' distances, refined by
  segment reversals). The name order is kept unless the found order is clearly better
  (ambiguous stacks, like a flat subject, keep their names' order).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "FocusOrder",
    "energy_map",
    "focus_grid",
    "grid_from_energy",
    "focus_order",
    "path_cost",
    "unimodality_violation",
]

log = logging.getLogger("focusstack")

#: Cells of the focus grid along the longer side of the image.
GRID_CELLS = 16
#: Longer side (px) of the per-frame energy map kept by pass 1.
ENERGY_SIDE = 96


def energy_map(gray: np.ndarray, side: int = ENERGY_SIDE) -> np.ndarray:
    """Local Laplacian energy of one frame, at low resolution.

    Args:
        gray: ``(h, w)`` float32 grey image in [0, 1] (a downscaled frame is enough).
        side: longer side of the result (px).

    Returns:
        ``(eh, ew)`` float32 >= 0: the mean squared Laplacian (of the lightly smoothed image,
        divided by its mean so that exposure does not change it) over each output pixel's area.
    """
    if gray.ndim != 2 or min(gray.shape) < 8:
        raise ValueError(f"energy_map needs an (h, w) grey image of at least 8 px, got {gray.shape}")
    g = gray.astype(np.float32, copy=False)
    mean = float(g.mean())
    g = g * np.float32(0.5 / mean) if mean > 1e-6 else g.copy()
    g = cv2.GaussianBlur(g, (0, 0), 0.8, borderType=cv2.BORDER_REFLECT_101)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    np.square(lap, out=lap)
    h, w = g.shape
    s = min(1.0, side / max(h, w))
    size = (max(2, round(w * s)), max(2, round(h * s)))
    return cv2.resize(lap, size, interpolation=cv2.INTER_AREA)


def grid_from_energy(energy: np.ndarray, cells: int = GRID_CELLS, noise: float = 1.5 / 255.0) -> np.ndarray:
    """``(eh, ew)`` energy map -> ``(gy, gx)`` float32 log energy per cell (``cells`` along the
    longer side, proportionally fewer, at least 2, along the shorter). ``noise`` (std, in [0, 1]
    units of a mid-grey image) sets the floor added before the logarithm."""
    h, w = energy.shape
    gx = min(w, cells if w >= h else max(2, round(cells * w / h)))
    gy = min(h, cells if h > w else max(2, round(cells * h / w)))
    e = cv2.resize(energy.astype(np.float32, copy=False), (gx, gy), interpolation=cv2.INTER_AREA)
    return np.log(e + np.float32(noise * noise * 20.0)).astype(np.float32)


def focus_grid(gray: np.ndarray, cells: int = GRID_CELLS) -> np.ndarray:
    """Sharpness per region of one frame: ``(h, w)`` float32 grey in [0, 1] -> ``(gy, gx)``
    float32 log Laplacian energy per cell (:func:`energy_map` then :func:`grid_from_energy`)."""
    return grid_from_energy(energy_map(gray), cells)


def path_cost(dist: np.ndarray, order: Sequence[int]) -> float:
    """Sum of ``dist`` between consecutive entries of ``order``."""
    o = np.asarray(order)
    return float(dist[o[:-1], o[1:]].sum()) if len(o) > 1 else 0.0


def _two_opt(dist: np.ndarray, order: list[int]) -> list[int]:
    """Improve an open path by reversing segments while that shortens it."""
    o = list(order)
    n = len(o)
    improved = True
    while improved:
        improved = False
        for i in range(0, n - 1):
            for j in range(i + 1, n):
                # reverse o[i..j]: edges (i-1, i) and (j, j+1) become (i-1, j) and (i, j+1)
                before = (dist[o[i - 1], o[i]] if i > 0 else 0.0) + (dist[o[j], o[j + 1]] if j < n - 1 else 0.0)
                after = (dist[o[i - 1], o[j]] if i > 0 else 0.0) + (dist[o[i], o[j + 1]] if j < n - 1 else 0.0)
                if after < before - 1e-9:
                    o[i : j + 1] = o[i : j + 1][::-1]
                    improved = True
    return o


def _spectral(dist: np.ndarray) -> list[int]:
    """Fiedler-vector ordering of a distance matrix (spectral seriation)."""
    n = dist.shape[0]
    scale = float(np.median(dist[np.triu_indices(n, 1)])) or 1.0
    sim = np.exp(-((dist / scale) ** 2))
    lap = np.diag(sim.sum(1)) - sim
    _, vecs = np.linalg.eigh(lap)
    return [int(i) for i in np.argsort(vecs[:, 1], kind="stable")]


def unimodality_violation(x: np.ndarray, order: Sequence[int]) -> float:
    """How far the per-cell sharpness profiles are from unimodal along ``order``.

    Along the true focus order every region's sharpness rises to one peak (where it is in focus)
    and falls again. For a profile ``p`` the total variation is at least
    ``2 max(p) - p[0] - p[-1]``, with equality exactly when ``p`` is unimodal; the excess, summed
    over cells, is the violation (0 for a perfect focus order, up to noise).

    Args:
        x: ``(N, C)`` log energies (frames x cells).
        order: a permutation of ``0..N-1``.
    """
    p = x[np.asarray(order)]
    tv = np.abs(np.diff(p, axis=0)).sum(0)
    return float((tv - (2.0 * p.max(0) - p[0] - p[-1])).sum())


def _improve(x: np.ndarray, order: list[int], max_frames: int = 60) -> list[int]:
    """Reverse segments while that lowers :func:`unimodality_violation` (stacks up to
    ``max_frames`` frames; longer ones keep ``order``)."""
    n = len(order)
    if n > max_frames:
        return order
    best = list(order)
    best_v = unimodality_violation(x, best)
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                cand = best[:i] + best[i : j + 1][::-1] + best[j + 1 :]
                v = unimodality_violation(x, cand)
                if v < best_v - 1e-9:
                    best, best_v, improved = cand, v, True
    return best


@dataclass
class FocusOrder:
    """``order``: frame indices (into the name order) from one end of the focus range to the
    other; ``source``: "name" or "sharpness"; the unimodality violations
    (:func:`unimodality_violation`) of the name order and of the best order found."""

    order: list[int]
    source: str
    violation_name: float
    violation_found: float

    def to_dict(self) -> dict:
        return {
            "order": self.order,
            "source": self.source,
            "violation_name": round(self.violation_name, 4),
            "violation_found": round(self.violation_found, 4),
        }


def focus_order(
    grids: Sequence[np.ndarray], *, margin: float = 0.25, min_gain: float = 0.05, min_range: float = 0.2
) -> FocusOrder:
    """Order frames by focus distance from their sharpness grids (:func:`focus_grid`).

    Candidates: the name order, the spectral seriation of the grids' distances, and both
    shortened by 2-opt; the one whose cells' sharpness profiles are closest to unimodal
    (:func:`unimodality_violation`) is refined by segment reversals. It replaces the name order
    only when its violation is lower by more than ``margin`` of the name order's and by more
    than ``min_gain`` per informative cell: the name order is the camera's and wins near ties
    (flat or textureless subjects, where sharpness says little about order).

    Args:
        grids: one ``(gy, gx)`` float32 grid per frame, in name order (same geometry).
        margin, min_gain: see above.
        min_range: cells whose log energy varies by less than this across frames (no texture,
            or the same sharpness everywhere) are ignored.

    Returns:
        :class:`FocusOrder`; a found order is oriented to run the same way as the names.
    """
    n = len(grids)
    name = list(range(n))
    if n < 3:
        return FocusOrder(name, "name", 0.0, 0.0)
    x = np.stack([np.asarray(g, np.float64).ravel() for g in grids])  # (N, C)
    informative = (x.max(0) - x.min(0)) >= min_range
    if not informative.any():
        return FocusOrder(name, "name", 0.0, 0.0)
    x = x[:, informative]
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, 0.0)
    spectral = _spectral(dist)
    candidates = [name, spectral, _two_opt(dist, spectral), _two_opt(dist, name)]
    found = min(candidates, key=lambda o: unimodality_violation(x, o))
    found = _improve(x, found)
    v_name = unimodality_violation(x, name)
    v_found = unimodality_violation(x, found)
    if np.corrcoef(found, name)[0, 1] < 0:
        found = found[::-1]
    better = v_found < (1.0 - margin) * v_name and v_name - v_found > min_gain * x.shape[1]
    if found == name or not better:
        return FocusOrder(name, "name", v_name, min(v_found, v_name))
    return FocusOrder(found, "sharpness", v_name, v_found)
