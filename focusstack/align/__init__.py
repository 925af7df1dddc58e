"""Alignment of real camera stacks (docs/align.md).

* :mod:`~focusstack.align.registration`: coarse-to-fine ECC between two frames (similarity,
  affine or homography) on a band-passed grey image.
* :mod:`~focusstack.align.warp`: warping into the reference geometry (Lanczos, float32, no
  resampling for identity transforms) and the area every frame covers.
* :mod:`~focusstack.align.exposure`: per-channel gains against the reference frame.
* :mod:`~focusstack.align.chain`: a chain of frames, each registered against its focus
  neighbour, every transform judged against the identity. (The streamed two-pass analysis of a
  whole stack is ``focusstack.stack.analysis``.)
"""

from focusstack.align.exposure import GainReference, apply_gains, estimate_gains
from focusstack.align.registration import (
    MODELS,
    build_pyramid,
    corner_shift,
    feature_image,
    project_similarity,
    register_pair,
    transform_corners,
)
from focusstack.align.chain import Chain, PairCheck, lowpass_residual
from focusstack.align.warp import Crop, common_area, full_area, is_identity, warp_frame

__all__ = [
    "MODELS",
    "Crop",
    "Chain",
    "GainReference",
    "PairCheck",
    "apply_gains",
    "build_pyramid",
    "common_area",
    "corner_shift",
    "estimate_gains",
    "feature_image",
    "full_area",
    "is_identity",
    "lowpass_residual",
    "project_similarity",
    "register_pair",
    "transform_corners",
    "warp_frame",
]
