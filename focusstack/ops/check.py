"""One shape check for every array API (the model is kornia's ``KORNIA_CHECK_SHAPE``).

:func:`check_shape` takes a pattern such as ``"H W 3"`` or ``"K H W"``: a number must match
exactly, a letter names a dimension (the same letter twice must be the same size), ``*`` takes
any number of leading dimensions. It raises ``ValueError`` naming the expected and the actual
shape, and returns the array (as ``np.asarray``) so calls can be chained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_shape(x: object, pattern: str, name: str = "array") -> np.ndarray:
    """``x`` as an ndarray, after checking its shape against ``pattern`` (e.g. ``"H W 3"``).

    Raises:
        ValueError: ``name must be (H, W, 3), got shape (...)``.
    """
    a = np.asarray(x)
    dims = pattern.split()
    want = "(" + ", ".join(dims) + ")"
    lead = bool(dims) and dims[0] == "*"
    if lead:
        dims = dims[1:]
    ok = a.ndim >= len(dims) if lead else a.ndim == len(dims)
    sizes: dict[str, int] = {}
    if ok:
        for d, n in zip(dims, a.shape[a.ndim - len(dims):]):
            if d.isdigit():
                ok = n == int(d)
            else:
                ok = sizes.setdefault(d, n) == n
            if not ok:
                break
    if not ok:
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    return a


def check_frames(frames: Sequence[np.ndarray], *, max_frames: int | None = None, what: str = "fusion") -> list[np.ndarray]:
    """Validate a stack and return it as ``K x (H, W, 3)`` float32.

    float arrays are used as they are (cast to float32 without a copy when already float32);
    ``uint8`` and ``uint16`` arrays are scaled to [0, 1] by 255 and 65535.

    Raises:
        ValueError: no frames, more than ``max_frames``, a frame not ``(H, W, 3)``, sizes that
            differ, or a dtype that is neither float nor uint8/uint16.
    """
    if frames is None or len(frames) == 0:
        raise ValueError(f"{what} needs at least one frame, got none")
    if max_frames is not None and len(frames) > max_frames:
        raise ValueError(f"{what} takes at most {max_frames} frames, got {len(frames)}")
    out: list[np.ndarray] = []
    shape = None
    for i, f in enumerate(frames):
        a = np.asarray(f)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"frame {i} must be (H, W, 3) float32 in [0, 1], got shape {a.shape}")
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"frame {i} is empty, got shape {a.shape}")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"all frames must share one shape, frame 0 is {shape} and frame {i} is {a.shape}")
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / np.float32(255.0)
        elif a.dtype == np.uint16:
            a = a.astype(np.float32) / np.float32(65535.0)
        elif np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32, copy=False)
        else:
            raise ValueError(f"frame {i} must be float32 in [0, 1] (or uint8/uint16), got dtype {a.dtype}")
        out.append(a)
    return out
