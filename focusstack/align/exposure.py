"""Exposure and white-balance matching: one gain per colour channel, against the reference.

Defocus moves light around but keeps local means of linear light, so both images are
linearised (``v ** 2.2``) and reduced to a small, strongly blurred thumbnail before they are
compared; the gain of a channel is the median
ratio of the two thumbnails over the pixels that are neither near black nor near clipping in
either image (a median, so moving subjects and specular highlights do not pull it). Gains
within ``tolerance`` of 1 are not applied at all, so frames that already match stay bit-exact.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

__all__ = ["GainReference", "apply_gains", "estimate_gains"]

#: Longer side of the comparison thumbnail (px) and its blur (fraction of that side).
THUMB_SIDE = 256
THUMB_BLUR = 0.015
LOW, HIGH = 0.02, 0.96
#: A gain is applied only when its log exceeds this many standard deviations of the gains of
#: the image's CELLS x CELLS cells: on MF-VOC pairs (blur applied to encoded values) the frames
#: differ by 2-4 % in linear light with cell spreads of the same size, and applying those
#: "gains" cost 0.4 dB; a real exposure change of 4 % on devTR pairs is 10-20x the spread.
#: 6 x 6 cells, not 3 x 3: with 9 cells the spread itself is noisy, and on 3 registered devTR
#: and devA stacks with strong blur a one-channel "gain" of 1-1.7 % passed (occlusion changes
#: which colours a blurred frame shows), costing up to 0.9 dB against --no-align.
CELLS = 6
CONSISTENCY = 2.0
#: Frames are taken as gamma-encoded (sRGB-like): gains are measured in linear light
#: (``v ** GAMMA``) and applied to the encoded values as ``gain ** (1 / GAMMA)``.
GAMMA = 2.2
#: An exposure change scales light, so it shows as the same gain whether the frames are
#: averaged in linear light or as encoded values (the encoded log ratio is the linear one over
#: GAMMA). A blur applied to encoded values (MF-VOC) keeps the encoded means and shifts only the
#: linear ones. A gain is kept only when the encoded-domain estimate agrees with the linear one
#: within this fraction of it (MF-VOC scene_009: a 5 % "gain" of this kind cost 5 dB).
DOMAIN_AGREEMENT = 0.5


#: Rows of the full-size frame reduced per step of :func:`_thumbnail` (a multiple of the block).
CHUNK_ROWS = 64


def _block_sums(image: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means over ``f x f`` blocks of ``image`` ``(H, W, 3)`` float32 (rows and columns past the last
    whole block left out): of linear light (``max(v, 0) ** GAMMA``), of the encoded values, and of
    the "bad" indicator (any channel near black or near clipping), each ``(H // f, W // f[, 3])``.

    One pass over the frame, a band of rows at a time on every core: the band's linear copy stays
    in cache, where full-size planes cost one trip through memory per operation (five of them:
    0.11-0.17 s per 4096x2731 frame, against 0.03-0.05 s in bands)."""
    h, w = image.shape[:2]
    th, tw = h // f, w // f
    lin_small = np.empty((th, tw, 3), np.float32)
    enc_small = np.empty((th, tw, 3), np.float32)
    bad_small = np.empty((th, tw), np.float32)
    step = max(1, CHUNK_ROWS // f) * f  # rows per band, whole blocks
    bands = [(r, min(r + step, th * f)) for r in range(0, th * f, step)]
    width = tw * f

    def band(k: int) -> None:
        r0, r1 = bands[k]
        src = image[r0:r1, :width]
        rows = ((r1 - r0) // f, tw)
        o0 = r0 // f
        lin = np.maximum(src, 0.0)
        cv2.pow(lin, GAMMA, dst=lin)
        lin_small[o0 : o0 + rows[0]] = cv2.resize(lin, rows[::-1], interpolation=cv2.INTER_AREA)
        enc_small[o0 : o0 + rows[0]] = cv2.resize(src, rows[::-1], interpolation=cv2.INTER_AREA)
        ok = cv2.inRange(src, (LOW + 1e-7,) * 3, (HIGH - 1e-7,) * 3)  # 255 where all channels are fine
        bad_small[o0 : o0 + rows[0]] = cv2.resize(cv2.bitwise_not(ok), rows[::-1], interpolation=cv2.INTER_AREA)

    workers = min(len(bands), os.cpu_count() or 1)
    if workers > 1:  # (the bands' cv2 calls release the GIL)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="focusstack-thumb") as pool:
            list(pool.map(band, range(len(bands))))
    else:
        for k in range(len(bands)):
            band(k)
    return lin_small, enc_small, bad_small


def _thumbnail(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(H, W, 3)`` float32 in [0, 1] -> (blurred thumbnail of linear light ``(h, w, 3)``
    float32, the same of the encoded values, usable mask ``(h, w, 3)`` bool: no clipped or black
    pixel nearby). The thumbnail is the mean over whole ``f x f`` blocks, ``f`` the integer
    that brings the longer side to at most :data:`THUMB_SIDE` (at most ``f - 1`` edge rows and
    columns are left out)."""
    h, w = image.shape[:2]
    f = max(1, -(-max(h, w) // THUMB_SIDE))
    if h // f < 8 or w // f < 8:
        f = max(1, min(h, w) // 8)
    # defocus conserves local means of *light*, not of gamma-encoded values: average in linear
    # light; the clipped and black pixels are found at full resolution (a small specular
    # highlight vanishes in the thumbnail's average but still biases it), then grown by the
    # blur's reach. Clipped at 0: a warp's overshoots would give NaN.
    small, enc, bad_mean = _block_sums(np.asarray(image, np.float32), f)
    size = small.shape[1::-1]
    bad = bad_mean > 0
    reach = 2 * int(max(1.0, THUMB_BLUR * max(size))) + 1
    usable = cv2.dilate(bad.astype(np.uint8), np.ones((reach, reach), np.uint8)) == 0
    usable = np.repeat(usable[..., None], 3, axis=2)  # one mask for the three channels
    sigma = max(1.0, THUMB_BLUR * max(size))
    blurred = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    encoded = cv2.GaussianBlur(enc, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred, encoded, usable


class GainReference:
    """The reference frame's thumbnail, kept while the other frames are matched to it."""

    def __init__(self, reference: np.ndarray) -> None:
        """``reference``: ``(H, W, 3)`` float32 in [0, 1], already in the output geometry."""
        self.shape = reference.shape
        self.thumb, self.encoded, self.usable = _thumbnail(reference)


def estimate_gains(ref: GainReference, frame: np.ndarray, *, min_fraction: float = 0.05) -> np.ndarray:
    """Per-channel gains ``(3,)`` float64 that bring ``frame`` to the reference's exposure.

    Args:
        ref: the reference thumbnail (:class:`GainReference`).
        frame: ``(H, W, 3)`` float32 in [0, 1] in the same geometry as the reference.
        min_fraction: fewest usable thumbnail pixels (fraction) for a channel to be measured;
            a channel with fewer keeps gain 1.

    Returns:
        ``(3,)`` gains, clipped to [0.25, 4]; multiply the frame by them.
    """
    if frame.shape != ref.shape:
        raise ValueError(f"frame {frame.shape} and reference {ref.shape} must share one shape")
    thumb, encoded, usable = _thumbnail(frame)
    ok = usable & ref.usable
    gains = np.ones(3)
    h, w = thumb.shape[:2]
    for c in range(3):
        m = ok[..., c]
        if m.mean() < min_fraction:
            continue
        # (floored: black pixels are masked out, but log(0) would warn on stderr)
        ratio = np.log(np.maximum(ref.thumb[..., c], 1e-12).astype(np.float64)) - np.log(np.maximum(thumb[..., c], 1e-12).astype(np.float64))
        g = float(np.median(ratio[m]) / GAMMA)
        # An exposure change is the same everywhere; a defocus effect is not (blur applied to
        # gamma-encoded values, clipped highlights spread by the blur). Keep the gain only when
        # the 3x3 cells of the image agree on it (|gain| > consistency * their spread).
        cells = []
        for i in range(CELLS):
            for j in range(CELLS):
                sl = (slice(i * h // CELLS, (i + 1) * h // CELLS), slice(j * w // CELLS, (j + 1) * w // CELLS))
                mm = m[sl]
                if mm.mean() >= 0.2:
                    cells.append(float(np.median(ratio[sl][mm]) / GAMMA))
        if len(cells) >= 3 and abs(g) <= CONSISTENCY * float(np.std(cells)):
            continue
        # The same gain must show in the encoded values (see DOMAIN_AGREEMENT).
        g_enc = float(np.median(np.log(np.maximum(ref.encoded[..., c], 1e-12).astype(np.float64))[m]
                                - np.log(np.maximum(encoded[..., c], 1e-12).astype(np.float64))[m]))
        if abs(g_enc - g) > DOMAIN_AGREEMENT * abs(g):
            continue
        gains[c] = float(np.exp(g))
    return np.clip(gains, 0.25, 4.0)


def apply_gains(frame: np.ndarray, gains: np.ndarray, tolerance: float = 0.005) -> bool:
    """Multiply ``frame`` (``(H, W, 3)`` float32 in [0, 1], in place) by ``gains`` and clip to
    [0, 1]. Does nothing (and returns False) when every gain is within ``tolerance`` of 1."""
    g = np.asarray(gains, np.float64)
    if np.all(np.abs(g - 1.0) < tolerance):
        return False
    frame *= g.astype(np.float32)
    np.clip(frame, 0.0, 1.0, out=frame)
    return True
