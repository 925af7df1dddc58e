"""Finding, splitting and loading the source images: subjects (RGB + alpha) and backgrounds.

Subjects (``--subjects DIR``), searched recursively:

* a folder holding ``original/`` and ``alpha/`` sub-folders gives one subject per file stem found
  in both (``original/x.jpg`` + ``alpha/x.png``); its other sub-folders (``color/`` ...) are skipped;
* any other image with an alpha channel (RGBA/LA PNG, WebP, TIFF) is a ready cut-out;
* any other image without alpha is used with a procedural matte (ellipse or polygon).

Backgrounds (``--backgrounds DIR``): every image under DIR, recursively.

Train/val split: within each pool, sources are ordered by the SHA-256 of their path relative to
the folder given, and the first ``round(val_fraction * n)`` of them (at least 1, at most n - 1)
form the val pool. The split depends only on the file names, not on the seed, so train and val
never share a source image, and two datasets made from the same folders agree on it.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from focusstack.errors import ConfigError, ImageReadError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
PAIR_DIRS = ("original", "alpha")


@dataclass(frozen=True)
class Source:
    """One source image. ``alpha`` is a separate matte file (pairs); ``kind`` is one of
    ``pair``, ``cutout`` (alpha channel inside ``path``), ``rgb`` (procedural matte),
    ``background``."""

    id: str
    path: str
    alpha: str | None
    kind: str


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _has_alpha(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"cannot read {path}", expected="an image file", actual=str(exc)) from None


def _check_dir(folder: Path, option: str) -> Path:
    if not folder.is_dir():
        raise ConfigError(
            f"{option} {folder} is not a folder",
            expected="a folder of images",
            actual="missing" if not folder.exists() else "a file",
            fix=f"pass {option} with an existing folder, or leave it out for procedural textures",
        )
    return folder


def discover_subjects(root: Path) -> list[Source]:
    root = _check_dir(Path(root), "--subjects")
    found: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames.sort()
        if all((here / d).is_dir() for d in PAIR_DIRS):
            originals = {p.stem: p for p in _images_in(here / "original")}
            alphas = {p.stem: p for p in _images_in(here / "alpha")}
            for stem in sorted(originals.keys() & alphas.keys()):
                rgb = originals[stem]
                found.append(Source(rgb.relative_to(root).as_posix(), str(rgb), str(alphas[stem]), "pair"))
            dirnames[:] = []  # the pair folder is consumed whole (color/ etc. are duplicates)
            continue
        for p in _images_in(here):
            kind = "cutout" if _has_alpha(p) else "rgb"
            found.append(Source(p.relative_to(root).as_posix(), str(p), None, kind))
    if not found:
        raise ConfigError(
            f"no subject images found under {root}",
            expected="RGBA cut-outs, or original/ + alpha/ folders with the same file stems",
            actual="no image files",
            fix="point --subjects at a folder of images, or leave it out for procedural subjects",
        )
    return found


def discover_backgrounds(root: Path) -> list[Source]:
    root = _check_dir(Path(root), "--backgrounds")
    found: list[Source] = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames.sort()
        for p in _images_in(Path(dirpath)):
            found.append(Source(p.relative_to(root).as_posix(), str(p), None, "background"))
    if not found:
        raise ConfigError(
            f"no background images found under {root}",
            expected="image files (jpg, png, webp, tiff, bmp)",
            actual="none",
            fix="point --backgrounds at a folder of photos, or leave it out for procedural ones",
        )
    return found


def split_sources(sources: list[Source], val_fraction: float, option: str) -> tuple[list[Source], list[Source]]:
    """(train, val) pools; disjoint, and both non-empty when ``val_fraction > 0``."""
    if val_fraction <= 0:
        return list(sources), []
    n = len(sources)
    if n < 2:
        raise ConfigError(
            f"cannot split {option} sources between train and val",
            expected="at least 2 source images when --val-fraction > 0",
            actual=f"{n} image",
            fix=f"add images to {option}, or pass --val-fraction 0",
        )
    ordered = sorted(sources, key=lambda s: hashlib.sha256(s.id.encode()).hexdigest())
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    val = sorted(ordered[:n_val], key=lambda s: s.id)
    train = sorted(ordered[n_val:], key=lambda s: s.id)
    return train, val


def sample_split(index: int, val_fraction: float) -> str:
    """Split of sample ``index``: val for an evenly spread ``val_fraction`` of the indices.

    Independent of the number of samples, so adding samples later never changes earlier ones.
    """
    if val_fraction <= 0:
        return "train"
    return "val" if int((index + 1) * val_fraction) > int(index * val_fraction) else "train"


# --------------------------------------------------------------------------------------------
# loading (with a small per-process cache: the same sources come back in many samples)

_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_BYTES = 0
CACHE_LIMIT_BYTES = 512 * 1024 * 1024


def _remember(key: tuple, value: np.ndarray) -> np.ndarray:
    global _CACHE_BYTES
    _CACHE[key] = value
    _CACHE_BYTES += value.nbytes
    while _CACHE_BYTES > CACHE_LIMIT_BYTES and len(_CACHE) > 1:
        _, old = _CACHE.popitem(last=False)
        _CACHE_BYTES -= old.nbytes
    return value


def _open(path: str, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "L" and im.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(im, dtype=np.float64)
                return (np.clip(arr / 257.0, 0, 255) + 0.5).astype(np.uint8)
            return np.array(im.convert(mode))  # writable (torch.from_numpy warns otherwise)
    except FileNotFoundError:
        raise ImageReadError(f"cannot read {path}", expected="an existing file", actual="missing") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(
            f"cannot read {path}", expected="a decodable image", actual=f"{type(exc).__name__}: {exc}",
            fix="remove or replace the file",
        ) from None


def load_subject(src: Source) -> np.ndarray | None:
    """H x W x 4 uint8 RGBA cropped to the matte's bounding box; None for ``rgb`` sources without
    a matte (the caller draws a procedural one) -- use :func:`load_rgb` for those."""
    key = ("subject", src.path, src.alpha)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    if src.kind == "pair":
        rgb = _open(src.path, "RGB")
        alpha = _open(src.alpha, "L")
        if alpha.shape != rgb.shape[:2]:
            raise ImageReadError(
                f"matte {src.alpha} does not match {src.path}",
                expected=f"{rgb.shape[1]}x{rgb.shape[0]} px",
                actual=f"{alpha.shape[1]}x{alpha.shape[0]} px",
                fix="give every original/ image an alpha/ matte of the same size",
            )
        rgba = np.dstack([rgb, alpha])
    elif src.kind == "cutout":
        rgba = _open(src.path, "RGBA")
    else:
        return None
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if ys.size == 0:
        raise ImageReadError(
            f"subject {src.path} has an empty matte", expected="some alpha > 0", actual="all 0",
            fix="remove the file or fix its matte",
        )
    rgba = np.ascontiguousarray(rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    return _remember(key, rgba)


def load_rgb(path: str) -> np.ndarray:
    key = ("rgb", path)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    return _remember(key, _open(path, "RGB"))
