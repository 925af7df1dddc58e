"""The decision engine: the decision map of ``focusstack.maps.decision``, composed.

The map (focus measures, the argmax, the consistency check, soft boundaries, confidence) lives
one layer down, in :mod:`focusstack.maps.decision`, where refinement and alignment share it;
this module wraps it in the engine interface (:class:`focusstack.engines.base.Engine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from focusstack.maps.decision import (
    DecisionConfig,
    DecisionSteps,
    decision_fuse,
    decision_fuse_with_confidence,
    decision_steps,
)
from focusstack.progress import Advance


class DecisionEngine:
    """The decision engine (:class:`focusstack.engines.base.Engine`): ``fuse(frames, *, on_tile=None)``.

    ``K x (H, W, 3)`` float32 in [0, 1], any ``K >= 1`` of one size -> ``(H, W, 3)`` float32 in
    [0, 1]. No weights, no tiling: the whole image is processed at once (about
    ``(2 K + 10) * H * W * 4`` bytes beyond the frames themselves).
    """

    name = "decision"
    #: What ``FuseResult`` reports for this engine (it has no backend: numpy and cv2 on the CPU).
    device = "cpu"
    precision = "fp32"
    precision_reason = "numpy and OpenCV in float32 on the CPU (no networks)"
    max_frames = None  # any number (labels are uint8: 254 at most in one call)
    fallbacks: tuple[str, ...] = ()

    def __init__(self, config: DecisionConfig = DecisionConfig()) -> None:
        self.config = config

    def fuse(self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None) -> np.ndarray:
        return decision_fuse(frames, self.config, on_tile=on_tile)

    def fuse_with_confidence(
        self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return decision_fuse_with_confidence(frames, self.config, on_tile=on_tile)

    def steps(self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None) -> DecisionSteps:
        return decision_steps(frames, self.config, on_tile=on_tile)
