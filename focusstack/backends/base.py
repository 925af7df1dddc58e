"""The interface every backend (PyTorch, ONNX Runtime) implements, with numpy in and out.

Shapes, dtypes and ranges:

* ``encode``: ``(N, 3, H, W)`` float32 in [0, 1], H and W multiples of 8
  -> ``(N, C, H/8, W/8)`` float32 latents.
* ``fuse``: ``(B, F, C, h, w)`` float32 latents, F = the network's frame count (7)
  -> ``(B, C, h, w)`` float32.
* ``decode``: ``(B, C, h, w)`` float32 -> ``(B, 3, 8h, 8w)`` float32 in [0, 1].

``encode`` and ``decode`` are each two stages (see ``focusstack.networks.taesd``), exposed so that
the VAEEDOF engine can run the local stages patch by patch and the global ones on the whole
image:

* ``encode_local``: ``(N, 3, H, W)`` float32 in [0, 1] -> ``(N, W_f, H/8, W/8)`` float32 features.
* ``encode_global``: ``(N, W_f, h, w)`` features -> ``(N, C, h, w)`` latents.
* ``decode_global``: ``(B, C, h, w)`` latents -> ``(B, W_f, h, w)`` features.
* ``decode_local``: ``(B, W_f, h, w)`` features -> ``(B, 3, 8h, 8w)`` float32 in [0, 1].

``W_f`` is the autoencoder's width (64 for TAEF2), ``C`` its latent channels (32).

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
    #: Why ``precision`` was chosen (``--json``); backends that resolve ``auto`` say which rule decided.
    precision_reason: str = "given"
    frames: int = 7
    latent_channels: int = 32
    feature_channels: int = 64

    @abstractmethod
    def encode_local(self, images: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def encode_global(self, features: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode_global(self, latents: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode_local(self, features: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def fuse(self, latents: np.ndarray) -> np.ndarray: ...

    def encode(self, images: np.ndarray) -> np.ndarray:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 8 or images.shape[3] % 8:
            raise ValueError(f"encode expects (N, 3, H, W) with H, W multiples of 8, got {images.shape}")
        return self.encode_global(self.encode_local(images))

    def decode(self, latents: np.ndarray) -> np.ndarray:
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"decode expects (B, {self.latent_channels}, h, w), got {latents.shape}")
        return self.decode_local(self.decode_global(latents))

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
