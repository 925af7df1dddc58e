"""ONNX export of TAEF2's encoder and decoder and of the Fusion U-Net, each verified against its
torch model, and a cache of exported files keyed by the weights' sha256.

Exported graphs (opset :data:`OPSET`, weights embedded in the one ``.onnx`` file):

============  =====================  ==============================  ===========================
part          input                  output                          dynamic axes
============  =====================  ==============================  ===========================
``encoder``   ``images``             ``latents``                     batch, height, width
              ``(N, 3, H, W)``       ``(N, C, H/8, W/8)``
``decoder``   ``latents``            ``images`` (not clamped)        batch, height, width
              ``(B, C, h, w)``       ``(B, 3, 8h, 8w)``
``fusion``    ``latents``            ``fused``                       batch, height, width
              ``(B, F*C, h, w)``     ``(B, C, h, w)``
============  =====================  ==============================  ===========================

The ONNX backend runs the autoencoder as four split graphs (``focusstack.networks.taesd``:
local and global parts), so that the VAEEDOF engine can run the local ones patch by patch:
``encoder_local`` (``images (N, 3, H, W)`` -> ``features (N, W_f, H/8, W/8)``), ``encoder_global``
(``features`` -> ``latents``), ``decoder_global`` (``latents`` -> ``features``) and
``decoder_local`` (``features`` -> ``images``, not clamped). ``encoder``/``decoder`` (whole halves)
are exported on request only (``export-onnx --part``).

Every export is run once by ONNX Runtime on inputs of a *different* shape from the export
example (so a graph that froze a shape fails) and compared with torch; the max abs difference is
recorded and the export fails (:class:`OnnxExportError`, exit 1) above :data:`TOLERANCE`.

Each ``X.onnx`` has a sidecar ``X.onnx.json`` (:class:`ExportedModel`): the weights' digest, the
file's sha256, the exporter used, the measured difference. A file is reused only when its sidecar
names the same weights digest and :data:`EXPORT_VERSION` and the file's sha256 still matches.

The cache lives in ``cache_dir()/onnx`` (``$FOCUSSTACK_CACHE_DIR/onnx`` or the user cache), with
names ``<part>-<digest[:16]>.onnx``: new weights get new files, old ones are never overwritten.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from focusstack.backends.device import missing_onnx_error, onnx_available
from focusstack.config import BACKEND_PARTS, PARTS, TOLERANCE  # noqa: F401  (re-exported)
from focusstack.errors import FocusstackError, OutputExistsError, UsageError
from focusstack.networks.weights import cache_dir, sha256_file

log = logging.getLogger(__name__)

#: Bump when the export settings change: every cached file is then re-exported.
EXPORT_VERSION = 2
OPSET = 18
_NAMES = {
    "encoder": ("images", "latents"),
    "decoder": ("latents", "images"),
    "encoder_local": ("images", "features"),
    "encoder_global": ("features", "latents"),
    "decoder_global": ("latents", "features"),
    "decoder_local": ("features", "images"),
    "fusion": ("latents", "fused"),
}


class OnnxExportError(FocusstackError):
    """An export that failed, or whose ONNX output does not match torch (exit 1)."""


@dataclass(frozen=True)
class ExportedModel:
    """One exported part, as recorded in its ``.onnx.json`` sidecar."""

    part: str
    path: Path
    weights_digest: str
    onnx_sha256: str
    exporter: str  # "dynamo" or "torchscript" (the fallback)
    opset: int
    export_version: int
    max_abs_diff: float
    tolerance: float
    verify_shape: tuple[int, ...]
    torch_version: str
    seconds: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["verify_shape"] = list(self.verify_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ExportedModel:
        d = dict(d)
        d["path"] = Path(d["path"])
        d["verify_shape"] = tuple(d["verify_shape"])
        return cls(**d)


def onnx_cache_dir() -> Path:
    """``$FOCUSSTACK_CACHE_DIR/onnx`` or ``<user cache>/focusstack/onnx``."""
    return cache_dir() / "onnx"


def weights_digest(part: str, module: torch.nn.Module, config: dict | None = None) -> str:
    """sha256 over the part name, the export settings, the architecture and every weight."""
    h = hashlib.sha256()
    h.update(json.dumps({"part": part, "export_version": EXPORT_VERSION, "opset": OPSET, "config": config or {}},
                        sort_keys=True, default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _examples(part: str, module: torch.nn.Module, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(export example, verification input): different batch and spatial sizes, so a graph that
    froze any of them fails verification. Latent sides are multiples of 8 (the U-Net's levels).
    ``cfg`` is the part's architecture dict (TAESDConfig or FusionUNetConfig)."""
    g = torch.Generator().manual_seed(0)
    if part in ("encoder", "encoder_local"):
        return torch.rand(2, 3, 128, 128, generator=g), torch.rand(3, 3, 96, 160, generator=g)
    c = cfg["latent_channels"]
    if part == "fusion":
        fc = cfg["frames"] * c
        return torch.randn(2, fc, 16, 16, generator=g) * 2, torch.randn(3, fc, 24, 8, generator=g) * 2
    if part in ("encoder_global", "decoder_local"):
        c = cfg["width"]
        return torch.rand(2, c, 16, 16, generator=g) * 2, torch.rand(1, c, 8, 24, generator=g) * 2
    return torch.randn(2, c, 16, 16, generator=g) * 2, torch.randn(1, c, 8, 24, generator=g) * 2


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress to stdout and warn a lot: keep stdout for results (--json)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _export(part: str, module: torch.nn.Module, example: torch.Tensor, dest: Path) -> str:
    """Write ``dest``; return the exporter used."""
    in_name, out_name = _NAMES[part]
    try:
        from torch.export import Dim

        with _quiet():
            torch.onnx.export(
                module,
                (example,),
                str(dest),
                dynamo=True,
                input_names=[in_name],
                output_names=[out_name],
                dynamic_shapes=({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},),
                opset_version=OPSET,
                external_data=False,
                optimize=True,
                verbose=False,
            )
        return "dynamo"
    except Exception as exc:  # noqa: BLE001 - any dynamo failure falls back, and says so
        # Fallback: the TorchScript exporter (dynamo=False), for torch versions where the dynamo
        # exporter (needs onnx + onnxscript) fails on these modules. It traces, so the shape
        # checks in FusionUNet.forward become constants; verification at another shape below
        # catches any size it froze.
        log.warning("dynamo ONNX export of %s failed (%s: %s); using the TorchScript exporter",
                    part, type(exc).__name__, str(exc)[:200])
        with _quiet():
            torch.onnx.export(
                module,
                (example,),
                str(dest),
                dynamo=False,
                input_names=[in_name],
                output_names=[out_name],
                dynamic_axes={in_name: {0: "batch", 2: "height", 3: "width"},
                              out_name: {0: "batch", 2: "out_height", 3: "out_width"}},
                opset_version=OPSET,
            )
        return "torchscript"


def verify_onnx(path: Path, module: torch.nn.Module, x: torch.Tensor) -> float:
    """Max abs difference between ONNX Runtime (CPU, fp32) and ``module`` on ``x``."""
    import onnxruntime as ort  # optional extra: onnxruntime

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.inference_mode():
        want = module(x).float().numpy()
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got.astype(np.float32) - want).max())


def read_sidecar(path: Path) -> ExportedModel | None:
    """The sidecar of ``path`` when it is readable and ``path`` still has the recorded sha256."""
    side = Path(str(path) + ".json")
    if not (path.is_file() and side.is_file()):
        return None
    try:
        info = ExportedModel.from_dict(json.loads(side.read_text()))
    except (ValueError, TypeError, KeyError):
        return None
    if info.export_version != EXPORT_VERSION or _sha256(path) != info.onnx_sha256:
        return None
    return info


def export_part(
    part: str,
    module: torch.nn.Module,
    dest: Path,
    *,
    digest: str | None = None,
    config: dict | None = None,
    tolerance: float = TOLERANCE,
    force: bool = False,
) -> ExportedModel:
    """Export ``module`` (``part`` in :data:`PARTS`) to ``dest`` and verify it; reuse a current one.

    ``module`` is used in fp32 on the CPU (a copy when it is not already). Written atomically:
    a temporary file in ``dest``'s folder, renamed once verified.
    """
    if part not in PARTS:
        raise UsageError(f"unknown ONNX part {part!r}", expected=" | ".join(PARTS), actual=part)
    if not onnx_available():
        raise missing_onnx_error()
    module = _cpu_fp32(module)
    config = config if config is not None else _config(module)
    digest = digest or weights_digest(part, module, config)
    dest = Path(dest)
    if not force:
        current = read_sidecar(dest)
        if current is not None and current.weights_digest == digest:
            return current
    dest.parent.mkdir(parents=True, exist_ok=True)
    example, check = _examples(part, module, config if config is not None else _config(module))
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        t0 = time.perf_counter()
        try:
            exporter = _export(part, module, example, tmp)
        except Exception as exc:  # noqa: BLE001
            raise OnnxExportError(
                f"ONNX export of the {part} failed: {type(exc).__name__}: {str(exc)[:300]}",
                fix="install the onnx extra (pip install onnx onnxscript onnxruntime), or rerun with --debug and "
                "report the traceback; `--backend torch` works without ONNX",
            ) from None
        diff = verify_onnx(tmp, module, check)
        if not diff <= tolerance:
            raise OnnxExportError(
                f"the exported {part} does not match torch on a {tuple(check.shape)} input",
                expected=f"max abs difference <= {tolerance:g}",
                actual=f"{diff:.3g} ({exporter} exporter, torch {torch.__version__})",
                fix="use --backend torch, or report this with the torch and onnxruntime versions",
            )
        info = ExportedModel(
            part=part,
            path=dest,
            weights_digest=digest,
            onnx_sha256=_sha256(tmp),
            exporter=exporter,
            opset=OPSET,
            export_version=EXPORT_VERSION,
            max_abs_diff=diff,
            tolerance=tolerance,
            verify_shape=tuple(check.shape),
            torch_version=torch.__version__,
            seconds=round(time.perf_counter() - t0, 2),
        )
        # The sidecar first, then the model: a reader that sees one without the other finds a
        # sha256 mismatch and exports again, never a stale pairing.
        side = Path(str(dest) + ".json")
        side_tmp = side.with_name(f".{side.name}.{os.getpid()}.part")
        side_tmp.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        os.replace(side_tmp, side)
        os.replace(tmp, dest)
        log.info("exported %s to %s (%s, max abs diff %.2g)", part, dest, exporter, diff)
        return info
    finally:
        if tmp.exists():
            tmp.unlink()


def _cpu_fp32(module: torch.nn.Module) -> torch.nn.Module:
    p = next(module.parameters(), None)
    if p is not None and (p.device.type != "cpu" or p.dtype != torch.float32):
        module = copy.deepcopy(module).to("cpu", torch.float32)
    return module.eval()


def _config(module: torch.nn.Module) -> dict:
    cfg = getattr(module, "cfg", None)
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}


def part_modules(vae, fusion) -> dict[str, tuple[torch.nn.Module, dict]]:  # noqa: ANN001
    """``{part: (module, architecture dict)}`` for a TAESD and an optional Fusion U-Net."""
    arch = vae.cfg.to_dict()
    parts = {
        "encoder_local": (vae.encoder_local, arch),
        "encoder_global": (vae.encoder_global, arch),
        "decoder_global": (vae.decoder_global, arch),
        "decoder_local": (vae.decoder_local, arch),
        "encoder": (vae.encoder, arch),
        "decoder": (vae.decoder, arch),
    }
    if fusion is not None:
        parts["fusion"] = (fusion, fusion.cfg.to_dict())
    return parts


def cached_export(vae, fusion, *, cache: Path | None = None, tolerance: float = TOLERANCE) -> dict[str, ExportedModel]:  # noqa: ANN001
    """Exported parts for these weights from the cache, exporting (and verifying) what is missing."""
    cache = Path(cache) if cache is not None else onnx_cache_dir()
    out = {}
    for part, (module, cfg) in part_modules(vae, fusion).items():
        if part not in BACKEND_PARTS:
            continue
        digest = weights_digest(part, module, cfg)
        out[part] = export_part(part, module, cache / f"{part}-{digest[:16]}.onnx", digest=digest, config=cfg,
                                tolerance=tolerance)
    return out


def export_to_folder(
    vae,  # noqa: ANN001
    fusion,  # noqa: ANN001
    folder: Path,
    *,
    parts: tuple[str, ...] = BACKEND_PARTS,
    tolerance: float = TOLERANCE,
    overwrite: bool = False,
) -> dict[str, ExportedModel]:
    """``focusstack export-onnx``: write ``<part>.onnx`` (+ ``.onnx.json``) into ``folder``."""
    folder = Path(folder)
    modules = part_modules(vae, fusion)
    for part in parts:
        if part not in modules:
            raise UsageError(f"cannot export {part!r}: no Fusion U-Net was loaded", fix="pass --fusion-weights DIR")
        dest = folder / f"{part}.onnx"
        if dest.exists() and not overwrite:
            raise OutputExistsError(f"{dest} exists", fix="pass --overwrite to replace it, or choose another folder")
    out = {}
    for part in parts:
        module, cfg = modules[part]
        out[part] = export_part(part, module, folder / f"{part}.onnx", digest=weights_digest(part, module, cfg),
                                config=cfg, tolerance=tolerance, force=True)
    return out
