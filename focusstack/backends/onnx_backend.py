"""ONNX Runtime backend: the same interface and numbers as the torch backend (fp32), run by ONNX
Runtime with the CUDA execution provider when present, else the CPU one.

The three graphs come from :mod:`focusstack.backends.export` (exported once per set of weights
and cached, verified against torch). Sessions use every graph optimization
(``ORT_ENABLE_ALL``: constant folding, fusions, and on x86 the NCHWc convolution layout).

Precision: fp32 only (``auto`` means fp32). ONNX Runtime on the CPU has no fast bf16 convolutions;
use ``--backend torch`` for bf16/fp16. Measured on the 2-core development CPU: 7 frames at
512 px run about 1.2-1.3x faster than torch fp32 (docs/bench.md).

Needs the ``onnx`` extra (``pip install 'focusstack[onnx]'``: onnx, onnxscript, onnxruntime) or
the ``gpu`` extra (onnxruntime-gpu), never both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from focusstack.backends.base import FusionBackend

# missing_onnx_error, onnx_available and resolve_onnx_device live in focusstack.backends.device
# (export.py needs them too, and must not import this module); importable from here as before.
from focusstack.backends.device import missing_onnx_error, onnx_available, resolve_onnx_device
from focusstack.errors import ConfigError
from focusstack.lazy import load


def resolve_onnx_precision(precision: str) -> str:
    """``--precision`` for ONNX Runtime: ``auto`` or ``fp32`` -> ``"fp32"``; anything else raises :class:`ConfigError`."""
    if precision in ("auto", "fp32"):
        return "fp32"
    raise ConfigError(
        f"--precision {precision} is not supported by the ONNX backend",
        expected="fp32 (or auto)",
        actual=precision,
        fix="use --precision fp32 with --backend onnx, or --backend torch for bf16/fp16",
    )


class OnnxBackend(FusionBackend):
    """Runs the exported encoder, Fusion U-Net and decoder with ONNX Runtime (fp32)."""

    name = "onnx"

    def __init__(
        self,
        models: dict[str, Path],
        *,
        frames: int = 7,
        latent_channels: int = 32,
        feature_channels: int = 64,
        device: str = "auto",
        precision: str = "auto",
        threads: int = 0,
    ) -> None:
        """``models``: a path for each of ``encoder_local``, ``encoder_global``, ``decoder_global``,
        ``decoder_local`` and (optional) ``fusion``.

        ``threads``: intra-op threads per session; 0 lets ONNX Runtime choose (physical cores).
        """
        try:
            import onnxruntime as ort  # optional extra: onnxruntime
        except ImportError:
            raise missing_onnx_error() from None
        self.device, providers = resolve_onnx_device(device)
        self.precision = resolve_onnx_precision(precision)
        self.precision_reason = "the ONNX backend runs fp32" if precision == "auto" else "given"
        self.frames = frames
        self.latent_channels = latent_channels
        self.feature_channels = feature_channels
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        # No CPU memory arena: the arena keeps its high-water mark for the session's life, which
        # nearly doubled peak memory (7 frames at 512 px: 3.5 GB with it, 1.95 GB without) for no
        # measurable speed.
        so.enable_cpu_mem_arena = False
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.threads = threads
        self.providers = providers

        def session(part: str):  # noqa: ANN202
            return ort.InferenceSession(str(models[part]), so, providers=providers)

        self._encoder_local = session("encoder_local")
        self._encoder_global = session("encoder_global")
        self._decoder_global = session("decoder_global")
        self._decoder_local = session("decoder_local")
        self._fusion = session("fusion") if models.get("fusion") else None

    @classmethod
    def from_torch(
        cls,
        vae,  # noqa: ANN001 - focusstack.networks.taesd.TAESD
        fusion,  # noqa: ANN001 - focusstack.networks.fusion_unet.FusionUNet | None
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: int = 0,
        cache: Path | None = None,
    ) -> OnnxBackend:
        """Export these torch models (or reuse the cached, verified export) and open sessions."""
        if not onnx_available():
            raise missing_onnx_error()
        resolve_onnx_precision(precision)  # fail before a long export
        # export.py imports torch: reached on first use, and it never imports this module.
        exported = load("focusstack.backends.export:cached_export")(vae, fusion, cache=cache)
        backend = cls(
            {part: info.path for part, info in exported.items()},
            frames=fusion.cfg.frames if fusion is not None else 7,
            latent_channels=vae.cfg.latent_channels,
            feature_channels=vae.cfg.width,
            device=device,
            precision=precision,
            threads=threads,
        )
        backend.exported = exported
        return backend

    @staticmethod
    def _run(sess, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
        x = np.ascontiguousarray(x, dtype=np.float32)
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    def _check(self, name: str, a: np.ndarray, channels: int) -> None:
        if a.ndim != 4 or a.shape[1] != channels:
            raise ValueError(f"{name} expects (N, {channels}, h, w), got {a.shape}")

    def encode_local(self, images: np.ndarray) -> np.ndarray:
        self._check("encode_local", images, 3)
        if images.shape[2] % 8 or images.shape[3] % 8:
            raise ValueError(f"encode_local expects H, W multiples of 8, got {images.shape}")
        return self._run(self._encoder_local, images)

    def encode_global(self, features: np.ndarray) -> np.ndarray:
        self._check("encode_global", features, self.feature_channels)
        return self._run(self._encoder_global, features)

    def decode_global(self, latents: np.ndarray) -> np.ndarray:
        self._check("decode_global", latents, self.latent_channels)
        return self._run(self._decoder_global, latents)

    def decode_local(self, features: np.ndarray) -> np.ndarray:
        self._check("decode_local", features, self.feature_channels)
        out = self._run(self._decoder_local, features)
        return np.clip(out, 0.0, 1.0, out=out)

    def fuse(self, latents: np.ndarray) -> np.ndarray:
        if self._fusion is None:
            raise RuntimeError("this backend was built without a Fusion U-Net")
        if latents.ndim != 5 or latents.shape[1:3] != (self.frames, self.latent_channels):
            raise ValueError(f"fuse expects (B, {self.frames}, {self.latent_channels}, h, w), got {latents.shape}")
        b, f, c, h, w = latents.shape
        if h % 8 or w % 8:
            raise ValueError(f"latent height and width must be multiples of 8, got {h}x{w}")
        return self._run(self._fusion, latents.reshape(b, f * c, h, w))
