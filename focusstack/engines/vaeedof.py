"""The VAEEDOF engine (paper section 3): encode every frame of a patch with the frozen TAEF2
encoder, fuse the (duplicated up to 7) latents with the Fusion U-Net, decode, and blend the
overlapping patches with the gradient alpha mask (``focusstack.tiling``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from focusstack.backends.base import FusionBackend
from focusstack.config import TileConfig
from focusstack.progress import Advance
from focusstack.tiling import Tile, blend_tiles, extract


def _patch(frames: Sequence[np.ndarray], t: Tile) -> np.ndarray:
    """``(K, 3, ph, pw)`` float32: the patch of every frame, mirrored outside the image."""
    crops = np.stack([extract(f, t) for f in frames])  # (K, ph, pw, 3)
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)


class VAEEDOFEngine:
    name = "vaeedof"

    def __init__(self, backend: FusionBackend, tiles: TileConfig = TileConfig()) -> None:
        self.backend = backend
        self.tiles = tiles

    def fuse(self, frames: Sequence[np.ndarray], *, on_tile: Advance | None = None) -> np.ndarray:
        """``K x (H, W, 3)`` float32 in [0, 1], 2 <= K <= 7, one size -> ``(H, W, 3)`` float32 in [0, 1]."""
        if not frames:
            raise ValueError("fuse needs at least one frame")
        shape = frames[0].shape
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3), got {shape}")
        for f in frames:
            if f.shape != shape:
                raise ValueError(f"all frames must share one shape, got {shape} and {f.shape}")
        if len(frames) > self.backend.frames:
            raise ValueError(f"at most {self.backend.frames} frames, got {len(frames)}")
        h, w = shape[:2]

        def process(t: Tile) -> np.ndarray:
            out = self.backend.fuse_patch(_patch(frames, t))  # (3, ph, pw)
            return out[:, : t.h, : t.w].transpose(1, 2, 0)

        out = blend_tiles(h, w, self.tiles, process, on_tile=on_tile)
        return np.clip(out, 0.0, 1.0, out=out)
