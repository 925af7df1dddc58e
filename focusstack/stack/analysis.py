"""Alignment and focus order of a whole stack, streamed: pass 1 estimates, pass 2 applies.

Pass 1 (:func:`analyse_stack`) reads every frame once, in name order, and keeps only small
things per frame: its sharpness grid (``focusstack.stack.order.focus_grid``) and the transform to
its predecessor, found on a downscaled grey image. Neighbours are registered to each other, not
to the reference, because neighbouring frames are focused at nearly the same distance and look
alike; the transforms are then chained to the reference (the middle frame of the focus order):

    T_ref<-k = T_ref<-k-1 . T_k-1<-k     (frames after the reference; the inverse before it).

If the focus order found from the sharpness grids differs from the name order, the chain is
registered again along the focus order (one more read of every frame).

Pass 2 (:class:`focusstack.stack.prepare.FramePreparer`) reads a frame when a slab needs it, warps it into the output box
(:mod:`focusstack.align.warp`) and matches its exposure to the reference
(:mod:`focusstack.align.exposure`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from focusstack.align.chain import Chain
from focusstack.align.registration import corner_shift, downscale_matrix
from focusstack.align.warp import Crop, common_area, full_area, is_identity
from focusstack.config import AlignConfig
from focusstack.errors import StackError
from focusstack.io import Frame
from focusstack.ops import Scratch, luminance
from focusstack.stack.order import FocusOrder, energy_map, focus_order, grid_from_energy

__all__ = ["StackAnalysis", "analyse_stack"]

log = logging.getLogger("focusstack.align")

Reader = Callable[[Path], Frame]
Advance = Callable[[int, int], None]


@dataclass
class StackAnalysis:
    """What pass 1 found. Lists are in name order (the order of ``paths``).

    ``transforms[k]``: ``(3, 3)`` float64 ``T_ref<-k`` (frame ``k`` pixels -> reference pixels,
    full resolution; exactly the identity for the reference and with alignment off).
    ``correlations[k]``: ECC correlation of frame ``k`` with its focus-order predecessor on the
    way to the reference (None for the reference). ``crop``: the output box in reference pixels.
    """

    paths: list[Path]
    width: int
    height: int
    order: FocusOrder
    reference: int
    transforms: list[np.ndarray]
    correlations: list[float | None]
    crop: Crop
    #: The area every frame covers (equal to ``crop`` unless ``--keep-size``): exposure is
    #: measured there only.
    common: Crop
    aligned: bool
    model: str | None
    #: EXIF and ICC of the first frame by name (the output keeps them).
    exif: bytes | None = None
    icc: bytes | None = None
    cache: dict[int, Frame] = field(default_factory=dict)
    reads: int = 0
    #: Per frame (name order): the verdict on its transform to its focus neighbour (None for
    #: the first frame of the chain or with alignment off); see :class:`PairCheck`.
    checks: list[dict | None] = field(default_factory=list)

    def frame_report(self, k: int) -> dict:
        t = self.transforms[k]
        return {
            "file": self.paths[k].name,
            "matrix": [[round(float(v), 8) for v in row] for row in t],
            "corner_shift_px": round(corner_shift(t, self.width, self.height), 4),
            "correlation": None if self.correlations[k] is None else round(self.correlations[k], 4),
            "check": self.checks[k] if k < len(self.checks) else None,
        }


def _working_gray(pixels: np.ndarray, max_side: int, scratch: Scratch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` float32 -> (grey ``(h, w)`` float32 with ``max(h, w) <= max_side``,
    ``(3, 3)`` full -> working pixel coordinates). ``scratch``: the full-size luminance plane,
    reused from frame to frame when it is downscaled (fresh pages for every frame cost 0.06 s
    at 4096x2731)."""
    h, w = pixels.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return luminance(pixels), np.eye(3)
    y = luminance(pixels, out=None if scratch is None else scratch.get((h, w)))
    ws, hs = max(8, round(w * s)), max(8, round(h * s))
    small = cv2.resize(y, (ws, hs), interpolation=cv2.INTER_AREA)
    return small, downscale_matrix(ws / w, hs / h)


def _chain_transforms(pairs: list[tuple[np.ndarray, float]], seq: list[int]) -> list[np.ndarray]:
    """``T_ref<-k`` for every frame (name order) from the pairwise transforms along ``seq``
    (``pairs[j]`` maps ``seq[j + 1]`` to ``seq[j]``); the reference is ``seq``'s middle."""
    n = len(seq)
    ref_pos = n // 2
    out = [np.eye(3) for _ in range(n)]
    for pos in range(ref_pos + 1, n):
        out[seq[pos]] = out[seq[pos - 1]] @ pairs[pos - 1][0]
    for pos in range(ref_pos - 1, -1, -1):
        out[seq[pos]] = out[seq[pos + 1]] @ np.linalg.inv(pairs[pos][0])
    return out


def _grids(energies: list[np.ndarray], transforms: list[np.ndarray] | None, to_energy: np.ndarray) -> list[np.ndarray]:
    """Focus grids of the energy maps, warped into the reference geometry (when transforms are
    given) and cut to the area all of them cover, so that one cell is one scene region."""
    if transforms is None:
        return [grid_from_energy(e) for e in energies]
    eh, ew = energies[0].shape
    inv = np.linalg.inv(to_energy)
    maps = [to_energy @ t @ inv for t in transforms]
    try:
        box = common_area(maps, ew, eh)
    except StackError:
        box = full_area(ew, eh)
    grids = []
    for e, m in zip(energies, maps):
        w = cv2.warpPerspective(e, m, (ew, eh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        grids.append(grid_from_energy(w[box.y0 : box.y1, box.x0 : box.x1]))
    return grids


def analyse_stack(
    paths: Sequence[Path],
    read: Reader,
    config: AlignConfig,
    *,
    need_order: bool,
    order_mode: str = "auto",
    keep_frames: bool = False,
    on_frame: Advance | None = None,
) -> StackAnalysis:
    """Pass 1: read every frame once; estimate focus order and alignment.

    Args:
        paths: the frames in name order (at least 2, one size).
        read: ``path -> Frame`` (``focusstack.io.read_image`` with the size limit bound).
        config: alignment settings; ``config.enabled`` False gives identity transforms.
        need_order: find the focus order from the frames (long stacks, or alignment chains).
        order_mode: ``"auto"`` (sharpness, falling back to names) or ``"name"``.
        keep_frames: keep the decoded frames in ``cache`` (short stacks: pass 2 reuses them).
        on_frame: progress ``(done, total)``.

    Raises:
        StackError: alignment failed (names the frame; suggests ``--no-align``).
        ImageReadError: a frame cannot be decoded.
    """
    paths = [Path(p) for p in paths]
    n = len(paths)
    align = config.enabled
    # A short stack is kept in memory: find the focus order first and register once, along it.
    # A long one is registered while it streams past (name order), and again only if needed.
    first = _read_pass(paths, read, config, need_order=need_order, keep_frames=keep_frames, on_frame=on_frame)
    chain = first.chain
    if need_order and order_mode == "auto":
        usable = chain is not None and chain.error is None
        provisional = _chain_transforms(chain.pairs, list(range(n))) if usable else None
        order = focus_order(_grids(first.energies, provisional, first.to_energy))
    else:
        order = FocusOrder(list(range(n)), "name", 0.0, 0.0)
    seq = order.order
    reads = first.reads
    if align and (chain is None or seq != list(range(n))):
        # frames are not focus neighbours in name order: register along the focus order
        chain, more = _register_along(paths, seq, read, config, first.cache, on_frame, first.grays)
        reads += more
    if chain is not None and chain.error is not None:
        raise chain.error
    checks = _checks(paths, seq, chain)
    transforms, correlations = _to_reference(chain.pairs if chain is not None else [], seq, first.width, first.height, config)
    common, crop = _output_box(transforms, paths, first.width, first.height, config)
    return StackAnalysis(
        paths=paths,
        width=first.width,
        height=first.height,
        order=order,
        reference=seq[len(seq) // 2],
        transforms=transforms,
        correlations=correlations,
        crop=crop,
        common=common,
        aligned=align,
        model=config.model if align else None,
        exif=first.exif,
        icc=first.icc,
        cache=first.cache,
        reads=reads,
        checks=checks,
    )


@dataclass
class _FirstPass:
    """What the first read of every frame keeps: energy maps (for the focus order), the chain
    registered in name order (long stacks), the cached frames (short stacks), size and EXIF."""

    energies: list[np.ndarray]
    to_energy: np.ndarray
    chain: Chain | None
    cache: dict[int, Frame]
    reads: int
    width: int
    height: int
    exif: bytes | None
    icc: bytes | None
    #: the working grey images of the cached frames (registration along the focus order reuses
    #: them instead of computing them again: 4096x2731, 7 frames: 0.5 s)
    grays: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def read_ahead(read: Reader, paths: Sequence[Path]) -> Iterator[Frame]:
    """``read(p)`` for every path in order, the next frame decoded in a worker thread while the
    caller works on the current one (decoding and the first touch of a frame's memory release
    the GIL: 4096x2731, 7 frames: about 0.5 s of reading hidden behind the analysis). At most one
    frame is read ahead; an error in reading is raised when that frame is asked for."""
    if len(paths) < 2:
        yield from (read(p) for p in paths)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="focusstack-read") as pool:
        pending = pool.submit(read, paths[0])
        for nxt in list(paths[1:]) + [None]:
            frame = pending.result()
            pending = pool.submit(read, nxt) if nxt is not None else None
            yield frame
            del frame


def _read_pass(paths: list[Path], read: Reader, config: AlignConfig, *, need_order: bool, keep_frames: bool,
               on_frame: Advance | None) -> _FirstPass:
    """Read every frame once, in name order: energy maps, the name-order chain (long stacks)."""
    n = len(paths)
    align = config.enabled
    energies: list[np.ndarray] = []
    to_energy = np.eye(3)
    chain = Chain(config) if align and not keep_frames else None
    exif = icc = None
    cache: dict[int, Frame] = {}
    grays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    scratch = Scratch()
    width = height = 0
    for i, (p, frame) in enumerate(zip(paths, read_ahead(read, paths))):
        height, width = frame.pixels.shape[:2]
        if i == 0:
            exif, icc = frame.exif, frame.icc
        gray, to_working = _working_gray(frame.pixels, config.max_side if align else 512, scratch)
        if need_order:
            energies.append(energy_map(gray))
            to_energy = downscale_matrix(energies[-1].shape[1] / gray.shape[1], energies[-1].shape[0] / gray.shape[0]) @ to_working
        if chain is not None:
            chain.feed(gray, to_working, p.name)
        if keep_frames:
            cache[i] = frame
            if align:
                grays[i] = (gray, to_working)
        del frame, gray
        if on_frame is not None:
            on_frame(i + 1, n)
    return _FirstPass(energies, to_energy, chain, cache, n, width, height, exif, icc, grays)


def _register_along(paths: list[Path], seq: list[int], read: Reader, config: AlignConfig, cache: dict[int, Frame],
                    on_frame: Advance | None, grays: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[Chain, int]:
    """Register the frames along ``seq`` (the focus order); returns the chain and the reads.
    ``grays``: working grey images already made from cached frames (used, and dropped)."""
    n = len(paths)
    chain = Chain(config)
    reads = 0
    grays = {} if grays is None else grays
    for j, k in enumerate(seq):
        if k in grays:
            gray, to_working = grays.pop(k)
            frame = None
        else:
            cached = cache.get(k)
            frame = cached if cached is not None else read(paths[k])
            reads += cached is None
            gray, to_working = _working_gray(frame.pixels, config.max_side)
        chain.feed(gray, to_working, paths[k].name)
        del frame, gray
        if on_frame is not None:
            on_frame(n + j + 1, 2 * n)
    return chain, reads


def _checks(paths: list[Path], seq: list[int], chain: Chain | None) -> list[dict | None]:
    """Per frame (name order), the verdict on its transform to its focus predecessor; one
    warning per uncertain pair."""
    checks: list[dict | None] = [None] * len(paths)
    if chain is None:
        return checks
    for j, c in enumerate(chain.checks):  # check j: frame seq[j + 1] against seq[j]
        checks[seq[j + 1]] = {"against": paths[seq[j]].name, **c.to_dict()}
        if c.status == "uncertain":
            log.warning(
                "warning: registration of %s against %s is uncertain (residual ratio %.2f); "
                "taking it as registered already (identity)", paths[seq[j + 1]].name, paths[seq[j]].name, c.ratio,
            )
    return checks


def _to_reference(pairs: list[tuple[np.ndarray, float]], seq: list[int], width: int, height: int,
                  config: AlignConfig) -> tuple[list[np.ndarray], list[float | None]]:
    """``T_ref<-k`` and the correlation of each frame (name order) from the pairwise transforms
    along ``seq``; a transform within ``snap_px`` of the identity is the identity."""
    n = len(seq)
    correlations: list[float | None] = [None] * n
    if not config.enabled:
        return [np.eye(3) for _ in range(n)], correlations
    transforms = _chain_transforms(pairs, seq)
    ref_pos = n // 2
    for pos in range(ref_pos + 1, n):
        correlations[seq[pos]] = pairs[pos - 1][1]
    for pos in range(ref_pos - 1, -1, -1):
        correlations[seq[pos]] = pairs[pos][1]
    for k in range(n):
        transforms[k] /= transforms[k][2, 2]
        if is_identity(transforms[k], width, height, config.snap_px):
            transforms[k] = np.eye(3)
    return transforms, correlations


def _output_box(transforms: list[np.ndarray], paths: list[Path], width: int, height: int, config: AlignConfig) -> tuple[Crop, Crop]:
    """``(common, crop)``: the area every frame covers, and the output box (the full frame with
    ``keep_size``, else the common area)."""
    common = full_area(width, height)
    if config.enabled:
        try:
            common = common_area(transforms, width, height, names=[p.name for p in paths])
        except StackError:
            if not config.keep_size:
                raise
    return common, (full_area(width, height) if config.keep_size else common)
