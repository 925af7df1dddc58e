"""Reference metrics (an output against its GT) through piq: VAEEDOF's Table 1.

piq (and torchvision, which piq imports) are imported on first use, never at package import, so
``focusstack --help`` stays fast and the core install does not need them. Settings:

* PSNR: ``piq.psnr(data_range=1)``; piq adds 1e-8 to the MSE, so identical images give 80 dB.
* MSE: mean over pixels and channels in float64, data range 1 (piq has no MSE function).
* SSIM: ``piq.ssim(kernel_size=11, kernel_sigma=1.5, data_range=1, downsample=False)``: the
  Wang et al. (2004) definition at full resolution, per channel, valid region (the same numbers
  as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)``).
* MS-SSIM, IW-SSIM (5 scales; >= 161 px), HaarPSI (>= 16 px), MDSI, MS-GMSD (>= 17 px): piq's
  defaults with ``data_range=1``.
* LPIPS, DISTS (VGG16) and PieAPP (stride 27): piq's models; they need weight files in the torch
  hub cache. Missing files make the metric unavailable (never a number); they are downloaded
  only with ``allow_download`` (``eval --download-weights``), with a socket timeout.

Inputs are ``(B, 3, H, W) float32`` tensors in [0, 1] (x = prediction, y = GT); outputs
``(B,) float64`` per image, or :class:`~focusstack.metrics.registry.Unavailable`.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from focusstack.errors import DependencyError
from focusstack.metrics.registry import (
    BY_KEY,
    WEIGHT_URLS,
    MetricInfo,
    Unavailable,
    checkpoint_dir,
    missing_weights,
    weights_reason,
)

EXTRA_FIX = "pip install 'focusstack[eval]' (piq, torchvision, scikit-image, matplotlib)"
MODEL_METRICS = ("lpips", "dists", "pieapp")


class MissingDependencyError(DependencyError):
    """piq or torchvision is not installed (exit 1, labelled "missing package"; the fix names
    the ``eval`` extra)."""


def import_piq() -> Any:
    """Import piq (and through it torchvision), or say which extra installs them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import piq  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the reference metrics need piq and torchvision, which are not importable",
            expected="piq and torchvision installed (the eval extra)",
            actual=str(exc),
            fix=EXTRA_FIX,
        ) from None
    return piq


def download_weights(files: Iterable[str], timeout_s: float) -> None:
    """Fetch weight files into :func:`checkpoint_dir` (only called with --download-weights)."""
    folder = checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        for name in files:
            dst = folder / name
            if dst.is_file():
                continue
            try:
                torch.hub.download_url_to_file(WEIGHT_URLS[name], str(dst), progress=False)
            except Exception as exc:  # noqa: BLE001 - any network failure makes the metric unavailable
                raise Unavailable(f"download of {name} from {WEIGHT_URLS[name]} failed ({exc}); "
                                  f"put the file in {folder} by hand") from None
    finally:
        socket.setdefaulttimeout(old)


class ReferenceScorer:
    """Scores batches of predictions against GT for a fixed set of reference metrics.

    Models (LPIPS, DISTS, PieAPP) are built once, on :meth:`prepare`; a metric whose weights
    are missing is recorded in :attr:`unavailable` (key -> reason) and skipped afterwards.
    """

    def __init__(self, keys: Iterable[str], device: str = "cpu", allow_download: bool = False,
                 download_timeout_s: float = 30.0) -> None:
        self.infos: list[MetricInfo] = [BY_KEY[k] for k in keys if BY_KEY[k].kind == "reference"]
        self.device = torch.device(device)
        self.allow_download = allow_download
        self.download_timeout_s = download_timeout_s
        self.unavailable: dict[str, str] = {}
        self._models: dict[str, torch.nn.Module] = {}
        self._piq: Any = None
        self._prepared = False

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.infos]

    def prepare(self) -> None:
        """Import piq and build the weight-based models (once)."""
        if self._prepared:
            return
        if self.infos:
            self._piq = import_piq()
        for info in self.infos:
            if info.key not in MODEL_METRICS:
                continue
            missing = missing_weights(info)
            try:
                if missing:
                    if not self.allow_download:
                        raise Unavailable(weights_reason(info, missing))
                    download_weights(missing, self.download_timeout_s)
                self._models[info.key] = self._build(info.key)
            except Unavailable as exc:
                self.unavailable[info.key] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a corrupt file: unavailable, say which
                self.unavailable[info.key] = (
                    f"could not load its weights from {checkpoint_dir()} ({type(exc).__name__}: {exc}); "
                    f"replace {', '.join(info.weights)}"
                )
        self._prepared = True

    def _build(self, key: str) -> torch.nn.Module:
        piq = self._piq
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if key == "lpips":
                m = piq.LPIPS(reduction="none")
            elif key == "dists":
                m = piq.DISTS(reduction="none")
            else:
                m = piq.PieAPP(reduction="none", stride=27)
        return m.to(self.device).eval()

    def _one(self, key: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        piq = self._piq
        if key == "mse":
            return ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3))
        if key == "psnr":
            return piq.psnr(x, y, data_range=1.0, reduction="none")
        if key == "ssim":
            return piq.ssim(x, y, data_range=1.0, kernel_size=11, kernel_sigma=1.5, downsample=False, reduction="none")
        if key == "ms_ssim":
            return piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none")
        if key == "iw_ssim":
            return piq.information_weighted_ssim(x, y, data_range=1.0, reduction="none")
        if key == "haarpsi":
            return piq.haarpsi(x, y, data_range=1.0, reduction="none")
        if key == "mdsi":
            return piq.mdsi(x, y, data_range=1.0, reduction="none")
        if key == "ms_gmsd":
            return piq.multi_scale_gmsd(x, y, data_range=1.0, reduction="none")
        return self._models[key](x, y)

    def score(self, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor | Unavailable]:
        """Every metric on a batch.

        Args:
            pred: ``(B, 3, H, W) float32`` in [0, 1], the outputs.
            gt: ``(B, 3, H, W) float32`` in [0, 1], their GT.

        Returns:
            key -> ``(B,) float64`` tensor (NaN marks an entry that gave no finite value), or :class:`Unavailable` for the whole
            batch (weights missing, image too small, the metric failed or gave NaN).
        """
        self.prepare()
        if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
        x = pred.to(self.device, torch.float32).clamp(0, 1)
        y = gt.to(self.device, torch.float32).clamp(0, 1)
        side = min(x.shape[-2:])
        out: dict[str, torch.Tensor | Unavailable] = {}
        for info in self.infos:
            if info.key in self.unavailable:
                out[info.key] = Unavailable(self.unavailable[info.key])
                continue
            if side < info.min_size:
                out[info.key] = Unavailable(f"image too small (needs >= {info.min_size} px, got {side})")
                continue
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    v = self._one(info.key, x, y).detach().to("cpu", torch.float64).reshape(-1)
            except Exception as exc:  # noqa: BLE001 - piq asserts on sizes/ranges; report, go on
                out[info.key] = Unavailable(f"{info.label} failed: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            if not torch.isfinite(v).any():
                out[info.key] = Unavailable(f"{info.label} gave a non-finite value (NaN or inf)")
                continue
            # a batch of patches may hold a few non-finite entries: NaN there, callers drop them
            out[info.key] = v
        return out
