"""Transition-region refinement for stacks of more than two frames.

The decision engine's map (``labels``, soft ``weights``) says which frame is sharp where; the
ordering (:mod:`focusstack.refinement.ordering`) says which frame is nearer. Wherever the map
puts a nearer frame ``i`` next to a farther frame ``j`` (every pair that shares a boundary),
the far frame ``j`` carries the diffusion of ``i``'s blurred foreground on its side of the
boundary, and the pair is treated like the paper's near/far pair:

* mask ``M_ij``: the FSB run on ``(frame_i, frame_j)`` with boundary refinement when trained
  weights exist, else the decision engine's soft weight of frame ``i``;
* ``sigma_ij``: the KEB on ``(frame_i, frame_j, M_ij)``, else the classical fit;
* ``S_ij = diffusion_component(frame_i, frame_j, M_ij, sigma_ij)``, weighted by frame ``j``'s
  share of ``R_init`` (its soft decision weight, or the estimated share of an ``--init`` file),
  so it only acts where ``R_init`` shows frame ``j``.

``R = R_init - sum_ij S_ij`` (in linear light by default). For two frames this is
:func:`focusstack.refinement.refine.refine_pair` with the decision engine's R_init.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from focusstack.maps.decision import DecisionSteps, decision_steps
from focusstack.refinement.diffusion import diffusion_component
from focusstack.refinement.ordering import Ordering, order_frames, pair_boundaries
from focusstack.refinement.refine import (
    RefineConfig,
    estimate_sigma,
    far_share_estimate,
    fsb_mask,
    refine_boundary,
    share_scale,
)
from focusstack.ops import linear_to_srgb, srgb_to_linear


@dataclass
class StackResult:
    """``refined``/``r_init`` ``(H, W, 3)`` float32 in [0, 1]; ``diffusion`` ``(H, W, 3)`` float32
    signed (removed); ``nearness`` ``(H, W)`` float32 in [0, 1] (1 = the nearest frame's region);
    ``pairs``: one dict per near/far pair refined."""

    refined: np.ndarray
    r_init: np.ndarray
    diffusion: np.ndarray
    nearness: np.ndarray
    ordering: Ordering
    pairs: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def refine_stack(
    frames: Sequence[np.ndarray],
    config: RefineConfig = RefineConfig(),
    *,
    init: np.ndarray | None = None,
    steps: DecisionSteps | None = None,
    ordering: Ordering | None = None,
    fsb=None,  # noqa: ANN001
    keb=None,  # noqa: ANN001
) -> StackResult:
    """Refine every near/far boundary of a ``K``-frame stack (see the module docstring).

    Args:
        frames: ``K x (H, W, 3)`` float32 in [0, 1], any order.
        init: ``(H, W, 3)`` float32 in [0, 1] to refine instead of the decision engine's fusion.
        steps, ordering: precomputed decision steps and ordering (else computed).
        fsb, keb: loaded networks or None for the fallbacks.
    """
    k = len(frames)
    if k < 2:
        raise ValueError(f"refine_stack needs at least 2 frames, got {k}")
    if steps is None:
        steps = decision_steps(frames)
    if ordering is None:
        ordering = order_frames(frames, steps.labels, steps.lumas) if config.order == "auto" else Ordering(tuple(range(k)), np.zeros((k, k), np.float32), np.zeros((k, k), np.int64), 0.0)
    rank = {f: r for r, f in enumerate(ordering.order)}
    h, w = steps.labels.shape
    r_init = init.astype(np.float32) if init is not None else steps.fused.astype(np.float32)
    dec = srgb_to_linear if config.linear_light else (lambda x: x)
    enc = linear_to_srgb if config.linear_light else (lambda x: np.clip(x, 0.0, 1.0))
    total = np.zeros((h, w, 3), np.float32)
    pairs = []
    width = max(4, int(round(0.03 * min(h, w))))
    radius = max(2, int(round(config.guide_radius * min(h, w))))
    for a, b in sorted(pair_boundaries(steps.labels, width)):
        i, j = (a, b) if rank[a] < rank[b] else (b, a)  # i nearer
        near, far = frames[i], frames[j]
        if fsb is not None:
            mask = refine_boundary(fsb_mask(fsb, near, far, config.work_size), near, radius, config.guide_eps)
        else:
            mask = steps.weights[i].astype(np.float32)
        sigma, source = estimate_sigma(near, far, mask, config.sigma_source, keb, config.work_size)
        share = steps.weights[j] if init is None else far_share_estimate(r_init, near, far, steps.weights[j], share_scale(sigma))
        s = diffusion_component(dec(near), dec(far), mask, sigma, config.epsilon) * share[..., None]
        total += s
        pairs.append({"near": int(i), "far": int(j), "sigma_px": round(float(sigma), 4), "sigma_source": source})
    refined = enc(dec(r_init) - total).astype(np.float32)
    nearness = np.zeros((h, w), np.float32)
    for f, r in rank.items():
        nearness += steps.weights[f] * np.float32(1.0 - r / max(1, k - 1))
    info = {
        "mask_source": "fsb" if fsb is not None else "decision-map",
        "sigma_source": "+".join(sorted({p["sigma_source"] for p in pairs})) or None,
        "r_init": "file" if init is not None else "decision-engine",
        "linear_light": config.linear_light,
    }
    return StackResult(refined, r_init, (r_init - refined).astype(np.float32), nearness, ordering, pairs, info)
