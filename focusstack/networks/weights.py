"""Finding, checking and loading weights.

TAEF2 (third-party, MIT) is never shipped with the project. :func:`resolve_vae_dir` looks, in
order, at:

1. the folder given by the user (``--vae-weights DIR``);
2. the environment variable ``FOCUSSTACK_VAE_DIR``;
3. the user cache (``platformdirs.user_cache_dir("focusstack")/taef2``);
4. a download from the canonical URL into that cache.

Every file is checked against its pinned sha256 before it is loaded. Our own models (the Fusion
U-Net) live in a folder with ``model.safetensors``, ``config.json`` (architecture only) and
``SHA256SUMS``; they are never pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from focusstack.config import (
    MODEL_DIR_ENVS,
    MODEL_KINDS,
    MODEL_WEIGHTS_FILE,
    VAE_DIR_ENV,
    model_dir,
    models_dir,
)
from focusstack.errors import WeightsError
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig
from focusstack.networks.taesd import TAESD, TAESDConfig

#: Canonical location of the TAEF2 files (madebyollin/taesd, MIT). Override for mirrors/tests.
VAE_URL_ENV = "FOCUSSTACK_VAE_URL"
VAE_BASE_URL = "https://github.com/madebyollin/taesd/raw/main/"
#: Pinned sha256 of each TAEF2 file (shared/weights/taef2/SOURCE.md).
VAE_FILES: dict[str, str] = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}
FUSION_WEIGHTS = MODEL_WEIGHTS_FILE
FUSION_CONFIG = "config.json"
SUMS_FILE = "SHA256SUMS"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """User cache folder for downloaded weights (``FOCUSSTACK_CACHE_DIR`` overrides it)."""
    env = os.environ.get("FOCUSSTACK_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("focusstack"))


def _dir_status(folder: Path) -> str | None:
    """None when every TAEF2 file is present with the right sha256, else a description."""
    for name, digest in VAE_FILES.items():
        p = folder / name
        if not p.is_file():
            return f"{p} is missing"
        actual = sha256_file(p)
        if actual != digest:
            return f"{p} is corrupt: sha256 {actual[:16]}..., expected {digest[:16]}..."
    return None


def _download(url: str, dest: Path, digest: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out)
        actual = sha256_file(Path(tmp))
        if actual != digest:
            raise WeightsError(
                f"downloaded {url} does not match its pinned sha256",
                expected=digest,
                actual=actual,
                fix="check the mirror in FOCUSSTACK_VAE_URL, or download the file by hand into "
                f"{dest.parent}",
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_vae_dir(user_dir: Path | None = None, *, allow_download: bool = True) -> Path:
    """Return a folder holding both TAEF2 files with their pinned sha256 (see module docstring).

    A user or environment folder that is set but wrong is an error (we never silently fall back
    past what the user asked for). Raises :class:`WeightsError` naming every place looked at.
    """
    if user_dir is not None:
        problem = _dir_status(Path(user_dir))
        if problem:
            raise WeightsError(
                f"--vae-weights {user_dir}: {problem}",
                fix="point --vae-weights at a folder with taef2_encoder.pth and taef2_decoder.pth "
                "from madebyollin/taesd (MIT)",
            )
        return Path(user_dir)
    env = os.environ.get(VAE_DIR_ENV)
    if env:
        problem = _dir_status(Path(env))
        if problem:
            raise WeightsError(
                f"{VAE_DIR_ENV}={env}: {problem}",
                fix=f"fix or unset {VAE_DIR_ENV}; it must hold taef2_encoder.pth and taef2_decoder.pth",
            )
        return Path(env)
    cached = cache_dir() / "taef2"
    problem = _dir_status(cached)
    if problem is None:
        return cached
    if not allow_download:
        raise WeightsError(
            f"TAEF2 weights not found: no --vae-weights, {VAE_DIR_ENV} unset, and {problem}",
            fix=f"set {VAE_DIR_ENV}=/path/to/taef2 or pass --vae-weights DIR, or download "
            f"{manual_download_urls()} by hand into {cached}",
        )
    base = os.environ.get(VAE_URL_ENV, VAE_BASE_URL)
    name = next(iter(VAE_FILES))
    try:
        for name, digest in VAE_FILES.items():
            dest = cached / name
            if dest.is_file() and sha256_file(dest) == digest:
                continue
            _download(base + name, dest, digest)
    except WeightsError:
        raise
    except (OSError, ValueError) as exc:
        raise WeightsError(
            f"TAEF2 weights not found and the download of {base + name} failed ({exc})",
            expected=f"both TAEF2 files in the cache {cached} (looked at --vae-weights: not given, "
            f"{VAE_DIR_ENV}: unset)",
            actual=problem,
            fix=f"download {manual_download_urls(base)} by hand into {cached} "
            f"(or into any folder and set {VAE_DIR_ENV} to it)",
        ) from None
    return cached


def manual_download_urls(base: str | None = None) -> str:
    """``"<base>taef2_encoder.pth and <base>taef2_decoder.pth"``: what to fetch by hand when the
    download fails (``base``: $FOCUSSTACK_VAE_URL or the canonical URL)."""
    base = base if base is not None else os.environ.get(VAE_URL_ENV, VAE_BASE_URL)
    return " and ".join(base + n for n in VAE_FILES)


def load_vae(folder: Path) -> TAESD:
    """Load TAEF2 from a checked folder (``strict=True``), float32, eval mode, frozen."""
    model = TAESD(TAESDConfig())
    for part, name in ((model.encoder, "taef2_encoder.pth"), (model.decoder, "taef2_decoder.pth")):
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
            part.load_state_dict(state, strict=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise WeightsError(
                f"{folder / name} does not load into the TAEF2 architecture: {exc}",
                fix="use the original TAEF2 files from madebyollin/taesd",
            ) from None
    model.float().eval().requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------
# Our own models: safetensors + config.json + SHA256SUMS.


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    folder: Path
    metadata: dict[str, str]


def save_model_dir(
    model: torch.nn.Module, config_dict: dict, folder: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``model.safetensors`` (+ string metadata), ``config.json`` and ``SHA256SUMS``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / FUSION_WEIGHTS), metadata={k: str(v) for k, v in (metadata or {}).items()})
    (folder / FUSION_CONFIG).write_text(json.dumps(config_dict, indent=2) + "\n")
    sums = "".join(f"{sha256_file(folder / n)}  {n}\n" for n in (FUSION_WEIGHTS, FUSION_CONFIG))
    (folder / SUMS_FILE).write_text(sums)


def verify_sums(folder: Path) -> None:
    sums = folder / SUMS_FILE
    if not sums.is_file():
        raise WeightsError(f"{sums} is missing", fix="re-save the model with `save_model_dir`")
    try:
        lines = sums.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{sums} cannot be read ({exc})", fix="restore the weights folder (re-download or re-save it)") from None
    for line in lines:
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise WeightsError(f"{sums}: a damaged line", expected="'<sha256>  <file name>' per line",
                               actual=repr(line[:80]), fix="restore the weights folder (re-download or re-save it)")
        digest, name = parts
        path = folder / name.strip()
        if not path.is_file():
            raise WeightsError(f"{path} is missing", fix=f"restore it; {sums} lists it")
        actual = sha256_file(path)
        if actual != digest:
            raise WeightsError(
                f"{path} is corrupt (sha256 mismatch)",
                expected=digest,
                actual=actual,
                fix=f"restore the file (reinstall focusstack for the shipped models in {models_dir()}, or re-export your own)",
            )


def missing_weights_fix() -> str:
    """The fix line for a model folder without weights: the shipped models, a reinstall, or
    your own export (focusstack never writes an output from untrained weights)."""
    envs = " / ".join(f"${MODEL_DIR_ENVS[k]}" for k in MODEL_KINDS)
    return (
        f"unset {envs} to use the weights shipped in the package ({models_dir()}); reinstall "
        f"focusstack if they are missing there; or export your own with "
        f"`focusstack train {'|'.join(MODEL_KINDS)} --export DIR` and point the variable at DIR"
    )


def default_fusion_dir() -> Path:
    """$FOCUSSTACK_FUSION_DIR, else the shipped ``focusstack/models/fusion``."""
    return model_dir("fusion")


def load_model_dir(
    folder: Path,
    build: Callable[[dict], torch.nn.Module],
    *,
    require_trained: bool = True,
) -> LoadedModel:
    """Check sha256 sums, build the model from ``config.json`` and load the safetensors strictly.

    ``require_trained``: refuse weights whose metadata does not say ``trained_steps`` > 0, so
    that no output is ever written from random weights.
    """
    folder = Path(folder)
    if not (folder / FUSION_WEIGHTS).is_file():
        raise WeightsError(
            f"no trained weights in {folder} ({FUSION_WEIGHTS} is missing)",
            expected=f"{FUSION_WEIGHTS}, {FUSION_CONFIG} and {SUMS_FILE} in {folder}",
            actual=f"no {FUSION_WEIGHTS}",
            fix=missing_weights_fix(),
        )
    verify_sums(folder)
    try:
        config = json.loads((folder / FUSION_CONFIG).read_text())
        model = build(config)
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise WeightsError(f"{folder / FUSION_CONFIG} is not a valid config: {exc}") from None
    try:
        with safe_open(str(folder / FUSION_WEIGHTS), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - SafetensorError (header too large, bad JSON, ...), OSError
        raise WeightsError(
            f"{folder / FUSION_WEIGHTS} is not a readable safetensors file",
            expected="a safetensors file written by focusstack (save_model_dir)",
            actual=f"{type(exc).__name__}: {str(exc)[:160]}",
            fix=f"restore {FUSION_WEIGHTS} and {SUMS_FILE} from the same export (its SHA256SUMS matches a damaged file)",
        ) from None
    try:
        trained_steps = int(metadata.get("trained_steps", "0") or 0)
    except ValueError:
        trained_steps = 0
    if require_trained and trained_steps <= 0:
        raise WeightsError(
            f"{folder / FUSION_WEIGHTS} holds untrained weights (trained_steps is 0)",
            fix="train the model first; focusstack never writes an output from untrained weights",
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{folder / FUSION_WEIGHTS} does not fit {folder / FUSION_CONFIG}: {str(exc)[:300]}",
            fix="keep the safetensors and config.json from the same training run together",
        ) from None
    model.float().eval().requires_grad_(False)
    return LoadedModel(model, folder, metadata)


def load_fusion(folder: Path | None = None, *, require_trained: bool = True) -> LoadedModel:
    """Load the Fusion U-Net from ``folder`` (default: $FOCUSSTACK_FUSION_DIR or focusstack/models/fusion)."""
    return load_model_dir(
        folder or default_fusion_dir(),
        lambda d: FusionUNet(FusionUNetConfig.from_dict(d)),
        require_trained=require_trained,
    )
