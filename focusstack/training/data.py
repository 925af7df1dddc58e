"""Training data for the Fusion U-Net: rendered samples -> cached TAEF2 latents -> latent patches.

A rendered dataset (``focusstack render-dataset``) has ``manifest.json`` and
``samples/<id>/frame_*.png`` + ``gt.png``. :func:`cache_latents` encodes each sample once with
the frozen encoder (bf16 on CPUs that have it) and stores ``<cache>/<key>.safetensors`` (the
sample id; ``<dataset folder name>-<id>`` for the second and later of several datasets) with
``frames`` ``(K, C, h, w)`` float16 and ``gt`` ``(C, h, w)`` float16. :class:`LatentPatches`
then draws random training patches from the cache in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from focusstack.backends.base import FusionBackend
from focusstack.errors import UsageError
from focusstack.io import read_image


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from an 8- or 16-bit PNG/TIFF/JPEG (16 bit kept)."""
    return read_image(path).pixels


@dataclass(frozen=True)
class SampleRef:
    """One rendered sample. ``key`` names its latent cache file (``<cache>/<key>.safetensors``):
    the sample id, prefixed when several datasets share one cache."""

    id: str
    split: str
    folder: Path
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.id)

    def frame_paths(self) -> list[Path]:
        return sorted(self.folder.glob("frame_*.png"))


def list_samples(data: Path, split: str | None = None, key_prefix: str = "") -> list[SampleRef]:
    """Samples of a rendered dataset, from its manifest (``split``: "train", "val" or None);
    ``key_prefix`` goes before each id in the cache key."""
    data = Path(data)
    manifest = data / "manifest.json"
    if not manifest.is_file():
        raise UsageError(
            f"{data} has no manifest.json",
            fix="point --data at a folder written by `focusstack render-dataset`",
        )
    splits = {e["id"]: e["split"] for e in json.loads(manifest.read_text()).get("samples", [])}
    refs = []
    # finished samples (meta.json is written last); a dataset still being rendered lists them
    # in its manifest only at the end, so the split is read from each meta.json when missing
    for meta in sorted((data / "samples").glob("*/meta.json")):
        sid = meta.parent.name
        s = splits.get(sid) or json.loads(meta.read_text()).get("split", "train")
        if split is None or s == split:
            refs.append(SampleRef(sid, s, meta.parent, key_prefix + sid))
    return refs


def list_datasets(datas: Sequence[Path], split: str | None = None) -> list[SampleRef]:
    """Samples of one or more rendered datasets, in the given order. The first dataset's cache
    keys are its sample ids; a later dataset's are prefixed with its folder name, so one cache
    holds them all. Two datasets with the same folder name are an error."""
    datas = [Path(d) for d in datas]
    if not datas:
        raise UsageError("no dataset given", fix="pass --data DIR (repeatable)")
    names = [d.name for d in datas]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(
            "datasets must have distinct folder names (they name the latent cache files)",
            expected="distinct names", actual=", ".join(dup), fix="rename or symlink one of the folders",
        )
    refs: list[SampleRef] = []
    for k, d in enumerate(datas):
        refs += list_samples(d, split, "" if k == 0 else f"{d.name}-")
    return refs


def cache_latents(
    refs: list[SampleRef],
    cache: Path,
    backend: FusionBackend,
    *,
    on_sample: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Encode every sample not cached yet; return the cache files in ``refs`` order."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, ref in enumerate(refs):
        dest = cache / f"{ref.key}.safetensors"
        if not dest.is_file():
            frames = np.stack([read_rgb(p) for p in ref.frame_paths()]).transpose(0, 3, 1, 2)
            gt = read_rgb(ref.folder / "gt.png").transpose(2, 0, 1)[None]
            h, w = (frames.shape[2] // 8) * 8, (frames.shape[3] // 8) * 8
            z = backend.encode(np.ascontiguousarray(np.concatenate([frames, gt])[:, :, :h, :w]))
            tmp = dest.with_suffix(".part")
            save_file(
                {
                    "frames": torch.from_numpy(z[:-1]).half(),
                    "gt": torch.from_numpy(z[-1]).half(),
                },
                str(tmp),
            )
            tmp.replace(dest)
        out.append(dest)
        if on_sample is not None:
            on_sample(i + 1, len(refs))
    return out


class LatentPatches:
    """Random latent patches with augmentation, all in memory.

    Each draw: a sample, a ``crop x crop`` latent window, a random flip and 90-degree turn, the
    sample's K frames permuted and duplicated up to ``frames`` (K distinct frames, 2 <= K <= 7).
    Returns ``x`` ``(B, frames, C, crop, crop)`` and ``y`` ``(B, C, crop, crop)`` float32.
    """

    def __init__(self, files: list[Path], frames: int = 7, crop: int = 32, seed: int = 0) -> None:
        if not files:
            raise UsageError("no cached samples to train on", fix="render a dataset with --samples > 0")
        self.items = []
        for f in files:
            d = load_file(str(f))
            self.items.append((d["frames"], d["gt"]))
        self.frames = frames
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (1,), generator=self.gen))

    def draw(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch):
            z, gt = self.items[self._randint(len(self.items))]
            k, _, h, w = z.shape
            c = min(self.crop, h, w)
            top, left = self._randint(h - c + 1), self._randint(w - c + 1)
            z = z[:, :, top : top + c, left : left + c]
            gt = gt[:, top : top + c, left : left + c]
            perm = torch.randperm(k, generator=self.gen)
            if k >= self.frames:
                order = perm[: self.frames]
            else:
                extra = perm[torch.randint(k, (self.frames - k,), generator=self.gen)]
                order = torch.cat([perm, extra])[torch.randperm(self.frames, generator=self.gen)]
            z = z[order]
            turns = self._randint(4)
            z, gt = torch.rot90(z, turns, (-2, -1)), torch.rot90(gt, turns, (-2, -1))
            if self._randint(2):
                z, gt = z.flip(-1), gt.flip(-1)
            xs.append(z.float())
            ys.append(gt.float())
        return torch.stack(xs), torch.stack(ys)
