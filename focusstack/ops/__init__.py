"""Array operations shared by every layer above: luminance and the sRGB curve, filters, focus
measures, composition and the one shape check. numpy and OpenCV only (no torch, no files).

Conventions: images are ``(H, W, 3)`` float32 in [0, 1], planes ``(H, W)`` float32, stacks
``(K, H, W)``; borders are mirrored (``BORDER_REFLECT_101``).
"""

from focusstack.ops.blend import compose
from focusstack.ops.check import check_frames, check_shape
from focusstack.ops.color import LUMA_WEIGHTS, linear_luminance, linear_to_srgb, luminance, srgb_to_linear
from focusstack.ops.filters import BORDER, GuidedFilter, box, color_guided_filter, gaussian, guided_filter
from focusstack.ops.focus import FocusMeasure, focus_measure, focus_measures, modified_laplacian
from focusstack.ops.memory import Scratch, empty_plain

__all__ = [
    "BORDER", "LUMA_WEIGHTS", "FocusMeasure", "GuidedFilter", "Scratch", "box", "check_frames", "check_shape", "color_guided_filter", "compose",
    "empty_plain", "focus_measure", "focus_measures", "gaussian", "guided_filter", "linear_luminance", "linear_to_srgb",
    "luminance", "modified_laplacian", "srgb_to_linear",
]
