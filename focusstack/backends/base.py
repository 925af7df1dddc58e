"""The interface every backend (PyTorch, ONNX Runtime) implements, with numpy in and out.

Shapes, dtypes and ranges:

* ``encode``: ``(N, 3, H, W)`` float32 in [0, 1], H and W multiples of 8
  -> ``(N, C, H/8, W/8)`` float32 latents.
* ``fuse``: ``(B, F, C, h, w)`` float32 latents, F = the network's frame count (7)
  -> ``(B, C, h, w)`` float32.
* ``decode``: ``(B, C, h, w)`` float32 -> ``(B, 3, 8h, 8w)`` float32 in [0, 1].

``fuse_patch`` chains them for one patch of a stack, encoding each distinct frame once and
duplicating latents up to F (VAEEDOF: fewer than 7 frames are duplicated).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class FusionBackend(ABC):
    name: str = "?"
    device: str = "cpu"
    precision: str = "fp32"
    frames: int = 7

    @abstractmethod
    def encode(self, images: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def fuse(self, latents: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray: ...

    def fuse_patch(self, frames: np.ndarray) -> np.ndarray:
        """``(K, 3, H, W)`` float32 in [0, 1], 1 <= K <= F -> ``(3, H, W)`` float32 in [0, 1]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"fuse_patch expects (K, 3, H, W), got {frames.shape}")
        k = frames.shape[0]
        if not 1 <= k <= self.frames:
            raise ValueError(f"fuse_patch expects 1 to {self.frames} frames, got {k}")
        latents = self.encode(frames)
        idx = np.arange(self.frames) % k
        fused = self.fuse(latents[idx][None])
        return self.decode(fused)[0]
