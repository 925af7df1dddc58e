"""Every metric ``focusstack eval`` knows: name, direction, ideal value, size limit, weight files.

Three kinds:

* ``reference``: an output scored against its ground truth (GT); the 11 metrics of VAEEDOF's
  Table 1, computed by piq (:mod:`focusstack.metrics.reference`).
* ``fusion``: an output scored against its source frames, no GT (the TR paper's Q^MI, Q^AB/F,
  Q^Y, :mod:`focusstack.metrics.fusion`), extended to N frames.
* ``mask``: a decision map scored against a GT decision mask (mIoU, :mod:`focusstack.metrics.masks`).

A metric that cannot be computed (missing weights, image too small, no edges to compare) is
*unavailable*: it carries a reason and never a number. :class:`Unavailable` is that reason.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Where torchvision and piq download their weights: ``torch.hub.get_dir()/checkpoints``
#: (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``).
VGG16_FILE = "vgg16-397923af.pth"

#: File name -> URL piq / torchvision would download it from (piq 0.8, torchvision >= 0.13).
WEIGHT_URLS: dict[str, str] = {
    VGG16_FILE: "https://download.pytorch.org/models/vgg16-397923af.pth",
    "lpips_weights.pt": "https://github.com/photosynthesis-team/photosynthesis.metrics/releases/download/v0.4.0/lpips_weights.pt",
    "dists_weights.pt": "https://github.com/photosynthesis-team/piq/releases/download/v0.4.1/dists_weights.pt",
    "PieAPPv0.1.pth": "https://github.com/photosynthesis-team/piq/releases/download/v0.5.4/PieAPPv0.1.pth",
}

KINDS = ("reference", "fusion", "mask")


class Unavailable(Exception):
    """A metric that cannot be computed here; ``str(exc)`` says why and how to fix it."""


@dataclass(frozen=True)
class MetricInfo:
    """One metric.

    ``ideal`` is the score of a perfect output (identical to the GT, or to every source frame);
    ``min_size`` the smallest image side in px the metric accepts; ``weights`` the files it
    needs in the torch hub checkpoint folder.
    """

    key: str
    label: str
    kind: str
    higher_is_better: bool
    ideal: float
    min_size: int = 1
    weights: tuple[str, ...] = ()
    description: str = ""

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "higher_is_better": self.higher_is_better,
            "ideal": self.ideal,
            "min_size": self.min_size,
            "weights": list(self.weights),
        }


def _qabf_max() -> float:
    """Q^AB/F of a perfect fusion with the standard constants (see metrics.fusion): 0.97484."""
    g = 0.9994 / (1.0 + math.exp(-15.0 * (1.0 - 0.5)))
    a = 0.9879 / (1.0 + math.exp(-22.0 * (1.0 - 0.8)))
    return g * a


#: piq's PSNR is ``10 log10(1 / (MSE + 1e-8))``: identical images give 80 dB, its ceiling.
PSNR_CEILING_DB = 80.0

METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("dists", "DISTS", "reference", False, 0.0, 32, (VGG16_FILE, "dists_weights.pt"),
               "Deep Image Structure and Texture Similarity (VGG16 features)"),
    MetricInfo("pieapp", "PieAPP", "reference", False, 0.0, 64, ("PieAPPv0.1.pth",),
               "Perceptual Image-Error Assessment through Pairwise Preference (64 px patches, stride 27)"),
    MetricInfo("haarpsi", "HaarPSI", "reference", True, 1.0, 16, (), "Haar wavelet-based perceptual similarity"),
    MetricInfo("iw_ssim", "IW-SSIM", "reference", True, 1.0, 161, (), "information-weighted SSIM (5 scales)"),
    MetricInfo("lpips", "LPIPS", "reference", False, 0.0, 32, (VGG16_FILE, "lpips_weights.pt"),
               "Learned Perceptual Image Patch Similarity (VGG16)"),
    MetricInfo("mdsi", "MDSI", "reference", False, 0.0, 4, (), "Mean Deviation Similarity Index"),
    MetricInfo("mse", "MSE", "reference", False, 0.0, 1, (), "mean squared error, data range 1"),
    MetricInfo("ms_ssim", "MS-SSIM", "reference", True, 1.0, 161, (), "multi-scale SSIM (5 scales)"),
    MetricInfo("ms_gmsd", "MS-GMSD", "reference", False, 0.0, 17, (), "multi-scale gradient magnitude similarity deviation"),
    MetricInfo("psnr", "PSNR", "reference", True, PSNR_CEILING_DB, 1, (), "peak signal-to-noise ratio in dB, data range 1"),
    MetricInfo("ssim", "SSIM", "reference", True, 1.0, 11, (),
               "structural similarity, 11x11 Gaussian window sigma 1.5, full resolution"),
    MetricInfo("q_mi", "Q^MI", "fusion", True, 2.0, 1, (), "normalised mutual information (Hossny et al. 2008)"),
    MetricInfo("q_abf", "Q^AB/F", "fusion", True, _qabf_max(), 3, (), "edge preservation (Xydeas and Petrovic 2000)"),
    MetricInfo("q_y", "Q^Y", "fusion", True, 1.0, 7, (), "SSIM-based fusion quality (Yang et al. 2008)"),
    MetricInfo("miou", "mIoU", "mask", True, 1.0, 1, (), "mean IoU of the decision map over its classes"),
)

BY_KEY: dict[str, MetricInfo] = {m.key: m for m in METRICS}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: dict[str, str] = {}
for _m in METRICS:
    _ALIASES[_norm(_m.key)] = _m.key
    _ALIASES[_norm(_m.label)] = _m.key
_ALIASES.update({"piqapp": "pieapp", "picapp": "pieapp", "qab": "q_abf", "qabf": "q_abf", "iou": "miou"})


def metric_names() -> list[str]:
    return [m.key for m in METRICS]


def resolve_metric(name: str) -> MetricInfo | None:
    """``"MS-SSIM"``, ``"ms_ssim"``, ``"msssim"`` -> the metric; ``None`` when unknown."""
    key = _ALIASES.get(_norm(name))
    return BY_KEY[key] if key else None


# --------------------------------------------------------------------------------------------
# weight files


def checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: follows ``$TORCH_HOME`` at call time."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights(info: MetricInfo) -> list[str]:
    """The weight files ``info`` needs that are not in :func:`checkpoint_dir` (names only)."""
    folder = checkpoint_dir()
    return [f for f in info.weights if not (folder / f).is_file() or os.path.getsize(folder / f) == 0]


def weights_reason(info: MetricInfo, missing: list[str]) -> str:
    folder = checkpoint_dir()
    urls = "; ".join(f"{f} from {WEIGHT_URLS.get(f, '?')}" for f in missing)
    return (
        f"weights missing: {', '.join(missing)} not in {folder} "
        f"(torch.hub.get_dir()/checkpoints; $TORCH_HOME moves it). Put the file(s) there ({urls}), "
        "or rerun with --download-weights where the network is reachable"
    )
