"""PyTorch backend on CPU or CUDA, fp32 / bf16 / fp16, channels_last on CPU and CUDA.

``precision="auto"`` on a CPU decides from the CPU's features, never from a timing (a
one-convolution timing is noisy on a loaded machine and once picked the slower path): bf16 only
when the CPU has AMX (``amx_bf16``), which runs bf16 convolutions several times faster. A CPU with
only AVX512-BF16 runs them *slower* than fp32 (measured here: 0.12 s against 0.075 s for a
64-channel 3x3 convolution at 256x256), so it gets fp32. On CUDA ``auto`` is bf16 (fp16 on GPUs
without bf16). :func:`precision_reason` says which rule decided.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import torch

from focusstack.backends.base import FusionBackend
from focusstack.backends.device import resolve_device
from focusstack.errors import ConfigError
from focusstack.networks.fusion_unet import FusionUNet
from focusstack.networks.taesd import TAESD

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX-BF16 (the only CPU feature that makes bf16 convolutions faster
    than fp32; AVX512-BF16 alone makes them slower)."""
    return "amx_bf16" in _cpu_flags()


def precision_reason(precision: str, device: str) -> str:
    """Why ``--precision auto`` chose what it did (for ``--json``); the given value otherwise."""
    if precision != "auto":
        return "given"
    if device == "cuda":
        return "CUDA: bf16 where supported, else fp16"
    if cpu_has_fast_bf16():
        return "CPU with AMX-BF16: bf16 convolutions are faster"
    return "CPU without AMX: bf16 convolutions are slower than fp32 here, fp32"


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        if device == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device == "cpu":
        raise ConfigError(
            "--precision fp16 is not supported on the CPU",
            expected="fp32 or bf16 on CPU",
            actual="fp16",
            fix="use --precision bf16 (or auto) on the CPU",
        )
    if precision not in DTYPES:
        raise ConfigError("unknown precision", expected="auto | fp32 | bf16 | fp16", actual=precision)
    return precision


class TorchBackend(FusionBackend):
    """Runs TAEF2 and the Fusion U-Net with PyTorch. The models are copied, then moved and cast (the caller's stay as they were)."""

    name = "torch"

    def __init__(
        self, vae: TAESD, fusion: FusionUNet | None, *, device: str = "auto", precision: str = "auto"
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.precision_reason = precision_reason(precision, self.device)
        self.dtype = DTYPES[self.precision]
        self.channels_last = True  # faster for every precision measured here, fp32 included
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        def prep(module: torch.nn.Module) -> torch.nn.Module:
            return copy.deepcopy(module).to(self.device, self.dtype, memory_format=fmt).eval()

        self.encoder_local_net = prep(vae.encoder_local)
        self.encoder_global_net = prep(vae.encoder_global)
        self.decoder_global_net = prep(vae.decoder_global)
        self.decoder_local_net = prep(vae.decoder_local)
        self.fusion = None
        if fusion is not None:
            self.fusion = copy.deepcopy(fusion).to(self.device, self.dtype, memory_format=fmt).eval()
            self.frames = fusion.cfg.frames
        self.latent_channels = vae.cfg.latent_channels
        self.feature_channels = vae.cfg.width

    def _in(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, self.dtype)
        if self.channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    @staticmethod
    def _out(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().contiguous().numpy()

    def _check(self, name: str, a: np.ndarray, channels: int) -> None:
        if a.ndim != 4 or a.shape[1] != channels:
            raise ValueError(f"{name} expects (N, {channels}, h, w), got {a.shape}")

    @torch.inference_mode()
    def encode_local(self, images: np.ndarray) -> np.ndarray:
        self._check("encode_local", images, 3)
        if images.shape[2] % 8 or images.shape[3] % 8:
            raise ValueError(f"encode_local expects H, W multiples of 8, got {images.shape}")
        return self._out(self.encoder_local_net(self._in(images)))

    @torch.inference_mode()
    def encode_global(self, features: np.ndarray) -> np.ndarray:
        self._check("encode_global", features, self.feature_channels)
        return self._out(self.encoder_global_net(self._in(features)))

    @torch.inference_mode()
    def decode_global(self, latents: np.ndarray) -> np.ndarray:
        self._check("decode_global", latents, self.latent_channels)
        return self._out(self.decoder_global_net(self._in(latents)))

    @torch.inference_mode()
    def decode_local(self, features: np.ndarray) -> np.ndarray:
        self._check("decode_local", features, self.feature_channels)
        return self._out(self.decoder_local_net(self._in(features)).clamp(0, 1))

    @torch.inference_mode()
    def fuse(self, latents: np.ndarray) -> np.ndarray:
        if self.fusion is None:
            raise RuntimeError("this backend was built without a Fusion U-Net")
        if latents.ndim != 5 or latents.shape[1:3] != (self.frames, self.latent_channels):
            raise ValueError(f"fuse expects (B, {self.frames}, {self.latent_channels}, h, w), got {latents.shape}")
        b, f, c, h, w = latents.shape
        x = self._in(latents.reshape(b, f * c, h, w))
        return self._out(self.fusion(x))
