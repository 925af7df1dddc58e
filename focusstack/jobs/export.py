"""The ``export-onnx`` job: check the options and the output folder, load TAEF2 (and the Fusion
U-Net when it is asked for), export each part to ``<output>/<part>.onnx`` with its
``.onnx.json`` sidecar, verified against torch (:mod:`focusstack.backends.export`), and return
an :class:`ExportResult`.

Cheap to import (no torch, no numpy): the CLI builds an :class:`ExportConfig` from this module
for ``focusstack export-onnx --help``; the weights loaders and the exporter, which import torch,
are reached through lazy references when the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from focusstack.backends.device import missing_onnx_error, onnx_available
from focusstack.config import BACKEND_PARTS, PARTS, TOLERANCE
from focusstack.errors import ConfigError, OutputExistsError, UsageError
from focusstack.lazy import load

if TYPE_CHECKING:
    from focusstack.backends.export import ExportedModel


@dataclass(frozen=True)
class ExportConfig:
    """What ``export-onnx`` exports, and from which weights.

    ``parts``: names from :data:`focusstack.config.PARTS` (repeats are dropped, order kept);
    default the ONNX backend's five (:data:`~focusstack.config.BACKEND_PARTS`).
    ``tolerance``: the largest max abs difference from torch (fp32) an export may show, > 0.
    ``vae_weights``: the TAEF2 folder (else ``$FOCUSSTACK_VAE_DIR``, the user cache, a download).
    ``fusion_weights``: the Fusion U-Net folder (else ``$FOCUSSTACK_FUSION_DIR`` or the shipped
    one); read only when ``"fusion"`` is among ``parts``.
    """

    parts: tuple[str, ...] = BACKEND_PARTS
    tolerance: float = TOLERANCE
    overwrite: bool = False
    vae_weights: Path | None = None
    fusion_weights: Path | None = None


@dataclass(frozen=True)
class ExportResult:
    """The exported parts, in the order asked for: ``{part: ExportedModel}`` (each as in its sidecar)."""

    output: Path
    parts: dict[str, ExportedModel]

    def to_dict(self) -> dict:
        """``{part: sidecar dict}``: what ``export-onnx --json`` prints."""
        return {p: info.to_dict() for p, info in self.parts.items()}


def check_export(output: Path, config: ExportConfig) -> tuple[str, ...]:
    """The cheap checks, before any weights are read: -> the parts to export (repeats dropped).

    Raises:
        ConfigError: an unknown part, no part, a tolerance that is not positive, or no onnxruntime.
        UsageError: ``output`` is a file.
        OutputExistsError: ``output/<part>.onnx`` exists without ``overwrite``.
    """
    parts = tuple(dict.fromkeys(config.parts))
    for p in parts:
        if p not in PARTS:
            raise ConfigError("unknown value for --part", expected=" | ".join(PARTS), actual=repr(p),
                              fix=f"pass one of: {', '.join(PARTS)}")
    if not parts:
        raise ConfigError("no part to export", expected=f"one or more of: {', '.join(PARTS)}", actual="none")
    if not config.tolerance > 0:
        raise ConfigError("--tolerance must be positive", expected="> 0", actual=str(config.tolerance))
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file", fix="give a folder")
    if not onnx_available():
        raise missing_onnx_error()
    for p in parts:
        dest = output / f"{p}.onnx"
        if dest.exists() and not config.overwrite:
            raise OutputExistsError(f"{dest} exists", fix="pass --overwrite to replace it, or choose another folder")
    return parts


def export_onnx(output: str | Path, config: ExportConfig = ExportConfig()) -> ExportResult:
    """Export ``config.parts`` to ``output/<part>.onnx`` (+ ``.onnx.json``); ``output`` is created.

    Each part is exported from fp32 CPU weights, run by ONNX Runtime at another shape than the
    export example and compared with torch; a difference above ``config.tolerance`` raises
    :class:`focusstack.backends.export.OnnxExportError` (exit 1) and leaves no file for that part.

    Raises, before any weights are read: see :func:`check_export`. Then
    :class:`focusstack.errors.WeightsError` for missing, corrupt or untrained weights.
    """
    output = Path(output)
    parts = check_export(output, config)
    # torch from here on: the loaders and the exporter are lazy references.
    load_fusion = load("focusstack.networks.weights:load_fusion")
    load_vae = load("focusstack.networks.weights:load_vae")
    resolve_vae_dir = load("focusstack.networks.weights:resolve_vae_dir")
    export_to_folder = load("focusstack.backends.export:export_to_folder")
    # The Fusion U-Net first: it refuses untrained weights before TAEF2 may be downloaded.
    fusion = load_fusion(config.fusion_weights).model if "fusion" in parts else None
    vae = load_vae(resolve_vae_dir(config.vae_weights))
    output.mkdir(parents=True, exist_ok=True)
    done = export_to_folder(vae, fusion, output, parts=parts, tolerance=config.tolerance, overwrite=config.overwrite)
    return ExportResult(output=output, parts=done)
