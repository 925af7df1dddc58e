"""Training data for FSB and KEB: 2-frame near/far samples from ``render-dataset``.

A sample folder holds ``frame_00.png`` (near: the subject plane in focus), ``frame_01.png``
(far: the background in focus), ``matte_00.png`` (the subject's sharp alpha = the GT foreground
mask of the near frame) and ``meta.json`` whose ``frames[1].sigma_px[0]`` is the Gaussian-
equivalent sigma (px) of the subject's blur in the far frame (the paper's ``K_3``).

Batches are built on the fly with augmentations that make the renders look more like real
photographs (the real test set, BetaFusion, is JPEG from a camera): random crops, flips and
90-degree turns, random rescaling (which also rescales sigma), colour gains and gamma (the same
for both frames), sensor noise and JPEG re-compression. The FSB's focus-difference channel is
computed *after* the augmentations, as at inference.

All images: ``(H, W, 3) float32 in [0, 1]``; masks ``(H, W) float32 in [0, 1]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from focusstack.errors import UsageError
from focusstack.ops import gaussian
from focusstack.refinement.features import fsb_input, keb_input
from focusstack.training.data import list_samples


@dataclass(frozen=True)
class TRSample:
    """One 2-frame rendered sample: folder, split and the far frame's subject sigma (px)."""

    id: str
    split: str
    folder: Path
    sigma_far: float

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(near, far, mask)``: two ``(H, W, 3)`` float32 in [0, 1] and ``(H, W)`` float32 in [0, 1]."""
        near = _read(self.folder / "frame_00.png")
        far = _read(self.folder / "frame_01.png")
        m = cv2.imread(str(self.folder / "matte_00.png"), cv2.IMREAD_UNCHANGED)
        if m is None:
            raise UsageError(f"{self.folder / 'matte_00.png'} cannot be read")
        if m.ndim == 3:
            m = m[..., 0]
        mask = m.astype(np.float32) / (65535.0 if m.dtype == np.uint16 else 255.0)
        return near, far, mask


def _read(path: Path) -> np.ndarray:
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise UsageError(f"{path} cannot be read")
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    return cv2.cvtColor(a, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(scale)


def list_tr_samples(data: Path, split: str | None = None, *, required: bool = True) -> list[TRSample]:
    """2-frame samples with a subject (``n_frames == 2``) of a rendered dataset, in id order.
    ``required``: raise :class:`UsageError` when there are none (else return an empty list)."""
    out = []
    for ref in list_samples(Path(data), split):
        meta = json.loads((ref.folder / "meta.json").read_text())
        if meta.get("n_frames") != 2 or not (ref.folder / "matte_00.png").is_file():
            continue
        if meta.get("frame_order", "near_to_far") != "near_to_far":
            continue
        sigma = float(meta["frames"][1]["sigma_px"][0])
        out.append(TRSample(ref.id, ref.split, ref.folder, sigma))
    if not out and required:
        raise UsageError(
            f"{data} has no 2-frame samples with a subject for split {split!r}",
            fix="render them with `focusstack render-dataset DIR --frames-min 2 --frames-max 2 ...`",
        )
    return out


# --------------------------------------------------------------------------------------------
# augmentations


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def photometric(images: list[np.ndarray], rng: np.random.Generator, strength: float = 1.0) -> list[np.ndarray]:
    """The same colour gain / gamma for every image, then independent noise and JPEG."""
    gains = np.exp(rng.normal(0, 0.08 * strength, 3)).astype(np.float32)
    gamma = float(np.exp(rng.normal(0, 0.12 * strength)))
    noise = float(rng.uniform(0, 0.015)) * strength if rng.random() < 0.7 else 0.0
    quality = int(rng.integers(55, 98)) if rng.random() < 0.6 * strength else 0
    out = []
    for im in images:
        im = np.clip(im * gains, 0, 1) ** gamma
        if noise > 0:
            im = im + rng.normal(0, noise, im.shape).astype(np.float32)
        im = np.clip(im, 0, 1).astype(np.float32)
        if quality:
            im = _jpeg(im, quality)
        out.append(im)
    return out


def geometric(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree turn for every ``(H, W[, C])`` array."""
    k = int(rng.integers(4))
    flip = rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _rescale(arrays: list[np.ndarray], f: float) -> list[np.ndarray]:
    if abs(f - 1.0) < 1e-3:
        return arrays
    h, w = arrays[0].shape[:2]
    size = (max(8, int(round(w * f))), max(8, int(round(h * f))))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return [cv2.resize(a, size, interpolation=interp) for a in arrays]


def _crop_at(arrays: list[np.ndarray], crop: int, cy: int, cx: int) -> list[np.ndarray]:
    h, w = arrays[0].shape[:2]
    if h < crop or w < crop:
        pad = [(0, max(0, crop - h)), (0, max(0, crop - w))]
        arrays = [np.pad(a, pad + [(0, 0)] * (a.ndim - 2), mode="reflect") for a in arrays]
        h, w = arrays[0].shape[:2]
    y0 = int(np.clip(cy - crop // 2, 0, h - crop))
    x0 = int(np.clip(cx - crop // 2, 0, w - crop))
    return [a[y0 : y0 + crop, x0 : x0 + crop] for a in arrays]


# --------------------------------------------------------------------------------------------
# FSB batches


def fsb_example(sample: TRSample, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """One augmented FSB example: ``(x (7, crop, crop), mask (crop, crop))`` float32."""
    near, far, mask = sample.load()
    near, far, mask = _rescale([near, far, mask], float(np.exp(rng.uniform(np.log(0.6), np.log(1.3)))))
    h, w = mask.shape
    if rng.random() < 0.7 and (mask > 0.5).any():  # centre most crops near the subject's edge
        edge = cv2.morphologyEx((mask > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        ys, xs = np.nonzero(edge) if edge.any() else np.nonzero(mask > 0.5)
        j = int(rng.integers(len(ys)))
        cy, cx = int(ys[j] + rng.integers(-crop // 4, crop // 4 + 1)), int(xs[j] + rng.integers(-crop // 4, crop // 4 + 1))
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    near, far, mask = _crop_at([near, far, mask], crop, cy, cx)
    near, far, mask = geometric([near, far, mask], rng)
    near, far = photometric([near, far], rng)
    return fsb_input(near, far), mask.astype(np.float32)


def fsb_batch(samples: list[TRSample], rng: np.random.Generator, batch: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (B, 7, crop, crop), mask (B, 1, crop, crop))`` float32 tensors."""
    xs, ms = [], []
    for _ in range(batch):
        x, m = fsb_example(samples[int(rng.integers(len(samples)))], rng, crop)
        xs.append(x)
        ms.append(m[None])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ms))


# --------------------------------------------------------------------------------------------
# KEB batches

#: Range of sigma (px) of the synthetic Gaussian examples, sampled log-uniformly.
KEB_SIGMA_RANGE = (0.3, 10.0)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """``(H, W[, 3])`` float32 -> same, Gaussian blur with ``sigma`` px (mirrored border)."""
    if sigma <= 0:
        return img.copy()
    return gaussian(img, float(sigma))


def keb_synthetic_example(clean: np.ndarray, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, float]:
    """The KEB check's setting: a clean crop and its Gaussian-blurred copy, mask = 1."""
    sigma = float(np.exp(rng.uniform(*np.log(KEB_SIGMA_RANGE))))
    h, w = clean.shape[:2]
    m = int(np.ceil(3 * sigma))
    big = crop + 2 * m
    (c,) = _crop_at([clean], big, int(rng.integers(h)), int(rng.integers(w)))
    (c,) = geometric([c], rng)
    blurred = gaussian_blur(c, sigma)[m : m + crop, m : m + crop]
    sharp = c[m : m + crop, m : m + crop]
    sharp, blurred = photometric([sharp, blurred], rng, strength=0.5)
    return keb_input(sharp, blurred, np.ones((crop, crop), np.float32)), sigma


def keb_rendered_example(sample: TRSample, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, float]:
    """A crop around the subject of a rendered pair: near (sharp subject), far (blurred subject),
    the GT matte randomly eroded or dilated (as a predicted mask would be off), and the far
    frame's subject sigma (scaled with the random rescale)."""
    near, far, mask = sample.load()
    f = float(np.exp(rng.uniform(np.log(0.7), np.log(1.2))))
    near, far, mask = _rescale([near, far, mask], f)
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys):
        j = int(rng.integers(len(ys)))
        cy, cx = int(ys[j]), int(xs[j])
    else:
        cy, cx = mask.shape[0] // 2, mask.shape[1] // 2
    near, far, mask = _crop_at([near, far, mask], crop, cy, cx)
    near, far, mask = geometric([near, far, mask], rng)
    r = int(rng.integers(-3, 4))
    if r:
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
        mask = (cv2.dilate if r > 0 else cv2.erode)(mask, ker)
    near, far = photometric([near, far], rng, strength=0.7)
    return keb_input(near, far, mask), sample.sigma_far * f


def keb_batch(
    samples: list[TRSample], clean: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int, synthetic_share: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (B, 7, crop, crop), sigma (B,))`` float32 tensors; a ``synthetic_share`` of the
    examples are Gaussian-blurred clean crops, the rest rendered pairs."""
    xs, ss = [], []
    for _ in range(batch):
        if clean and (not samples or rng.random() < synthetic_share):
            x, s = keb_synthetic_example(clean[int(rng.integers(len(clean)))], rng, crop)
        else:
            x, s = keb_rendered_example(samples[int(rng.integers(len(samples)))], rng, crop)
        xs.append(x)
        ss.append(s)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ss, dtype=torch.float32)


def clean_images(samples: list[TRSample], limit: int = 0) -> list[np.ndarray]:
    """All-in-focus ``gt.png`` of rendered samples, as clean images for the synthetic KEB examples."""
    refs = samples[:limit] if limit else samples
    return [_read(s.folder / "gt.png") for s in refs]
