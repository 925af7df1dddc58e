"""One stack of frame files fused by an engine, in two streamed passes (docs/align.md).

Pass 1 (``focusstack.stack.analysis``) reads every frame once to find the focus order and the
alignment (small per-frame results only); pass 2 (``focusstack.stack.prepare``) reads, warps
and exposure-matches the frames of one focus-ordered slab of at most ``slab_size`` frames at a
time, the engine fuses it, and the slab results are fused hierarchically
(``focusstack.stack.slabs``). Peak memory is one slab plus a few slab results, whatever the
number of frames. With alignment off and no more frames than one slab, frames go to the engine
exactly as read.

The engine never writes a file: with ``on_steps`` the engine's intermediate maps of each
fusion (``Stepped.steps``) are handed to the caller, which writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from focusstack.config import FuseConfig
from focusstack.engines.base import Engine, Progress, Stepped, Steps
from focusstack.errors import ConfigError
from focusstack.io import Frame
from focusstack.progress import StepProgress, step_progress
from focusstack.stack.analysis import StackAnalysis, analyse_stack
from focusstack.stack.depth import DepthAccumulator
from focusstack.stack.prepare import FramePreparer
from focusstack.stack.slabs import SlabReducer, SpillStore, count_merges, plan_slabs

#: ``on_steps(index, steps)``: the maps of the ``index``-th fusion of a stack (0 first).
OnSteps = Callable[[int, Steps], None]


@dataclass
class StackFusion:
    """What fusing one stack gave: ``fused`` ``(h, w, 3)`` float32 in [0, 1] (the crop's size),
    the first frame's ``exif``/``icc``, the slabs (indices in name order), the merges of slab
    results, the alignment report, the focus order and the output size."""

    fused: np.ndarray
    exif: bytes | None
    icc: bytes | None
    slabs: list[list[int]]
    merges: int
    alignment: dict
    focus: dict
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)


def slab_size_for(engine: Engine, config: FuseConfig) -> int:
    """``config.slab_size``, checked against the engine's limit (the Fusion U-Net takes 7)."""
    limit = getattr(engine, "max_frames", None)
    if limit is not None and config.slab_size > limit:
        raise ConfigError(
            f"--slab-size {config.slab_size} is more than the {engine.name} engine takes at once",
            expected=f"2..{limit}",
            actual=str(config.slab_size),
            fix=f"pass --slab-size {limit} or less",
        )
    return config.slab_size


class _Fuser:
    """``engine.fuse``, or ``engine.steps`` with the maps handed to ``on_steps`` (numbered)."""

    def __init__(self, engine: Engine, on_steps: OnSteps | None) -> None:
        self.engine, self.on_steps, self.calls = engine, on_steps, 0

    def __call__(self, frames: Sequence[np.ndarray], on_tile: Progress) -> np.ndarray:
        index = self.calls
        self.calls += 1
        if self.on_steps is None or not isinstance(self.engine, Stepped):
            return self.engine.fuse(frames, on_tile=on_tile)
        steps = self.engine.steps(frames, on_tile=on_tile)
        self.on_steps(index, steps)
        return steps.fused


def fuse_paths(
    paths: Sequence[Path],
    read: Callable[[Path], Frame],
    engine: Engine,
    config: FuseConfig,
    *,
    name: str,
    depth: DepthAccumulator | None = None,
    on_steps: OnSteps | None = None,
    read_time: Callable[[], float] = lambda: 0.0,
) -> StackFusion:
    """Fuse the frames at ``paths`` (name order, one size, at least 2) with ``engine``.

    ``read(path)`` decodes one frame (``read_time()`` says how long reading has taken so far,
    so that ``timings`` counts alignment and fusion without it). ``depth`` sees every frame,
    focus-ordered. Progress on stderr as ``fusing <name>`` when ``config.show_progress``.
    """
    n = len(paths)
    slab_size = slab_size_for(engine, config)
    fuser = _Fuser(engine, on_steps)
    timings: dict[str, float] = {}
    plain = not config.align.enabled and n <= slab_size
    # every step is known up front: analysis (one per frame), one fuse per slab, the merges
    n_slabs = 1 if n <= slab_size else len(plan_slabs(n, slab_size, config.slab_overlap))
    total = 1 if plain else n + n_slabs + count_merges(n_slabs, slab_size)
    with step_progress(f"fusing {name}", total, enabled=config.show_progress) as steps:
        if plain:
            # the plain path: frames go to the engine exactly as read
            t, read_before = time.perf_counter(), read_time()
            frames = [read(p) for p in paths]
            exif, icc = frames[0].exif, frames[0].icc
            if depth is not None:
                for k, f in enumerate(frames):
                    depth.update(k, f.pixels)
            fused = fuser([f.pixels for f in frames], steps.within(0, 1, "fusing"))
            del frames
            timings["fuse"] = time.perf_counter() - t - (read_time() - read_before)
            return StackFusion(fused, exif, icc, [list(range(n))], 0, {"enabled": False},
                               {"files": [p.name for p in paths], "order": list(range(n)), "source": "name"},
                               fused.shape[1], fused.shape[0], timings)
        t, read_before = time.perf_counter(), read_time()
        need_order = (n > slab_size or (config.align.enabled and n > 2)) and config.focus_order != "name"
        label = "aligning" if config.align.enabled else "ordering"
        # the analysis may register twice (along the focus order): its share is n steps either way
        worst = 2 * n if config.align.enabled and need_order else n

        def on_frame(done: int, _total: int) -> None:
            steps.update(min(n, n * done / worst), label)

        analysis = analyse_stack(
            paths, read, config.align, need_order=need_order, order_mode=config.focus_order,
            keep_frames=n <= slab_size, on_frame=on_frame,
        )
        steps.update(n, label)
        # reading is timed on its own; it overlaps the analysis (read_ahead), so this is at least 0
        timings["align"] = max(0.0, time.perf_counter() - t - (read_time() - read_before))
        order = analysis.order.order
        focus = {"files": [paths[k].name for k in order], **analysis.order.to_dict()}
        # a short stack is fused in name order (as without alignment); a long one in focus-ordered slabs
        slabs = [list(range(n))] if n <= slab_size else [[order[i] for i in s_] for s_ in plan_slabs(n, slab_size, config.slab_overlap)]
        t, read_before = time.perf_counter(), read_time()
        position = {k: j for j, k in enumerate(order)}
        fused, merges, preparer = _fuse_slabs(fuser, slabs, analysis, read, config, slab_size, steps, n, depth, position)
        timings["fuse"] = time.perf_counter() - t - (read_time() - read_before)
        return StackFusion(fused, analysis.exif, analysis.icc, slabs, merges, preparer.report(), focus,
                           analysis.crop.width, analysis.crop.height, timings)


def _fuse_slabs(
    fuser: _Fuser,
    slabs: list[list[int]],
    analysis: StackAnalysis,
    read: Callable[[Path], Frame],
    config: FuseConfig,
    slab_size: int,
    steps: StepProgress,
    base: int,
    depth: DepthAccumulator | None = None,
    position: dict[int, int] | None = None,
) -> tuple[np.ndarray, int, FramePreparer]:
    """Pass 2: prepare and fuse one slab at a time; merge the slab results as they come.

    Only the frames of the current slab (and those it shares with the next one) and the
    waiting slab results are held. Progress: step ``base + i`` is slab ``i``, then the merges.
    Returns ``(fused (h, w, 3) float32 in [0, 1], merges, preparer)``.
    """
    preparer = FramePreparer(analysis, read, config.align)
    n_slabs = len(slabs)
    n_merges = count_merges(n_slabs, slab_size)
    done_merges = 0

    def merge(images: list[np.ndarray], level: int) -> np.ndarray:
        nonlocal done_merges
        at = base + n_slabs + done_merges
        done_merges += 1
        return fuser(images, steps.within(at, 1, f"merging {done_merges}/{n_merges}"))

    # slab results wait for their merge on disk (bit-exact .npy files): the peak is one slab's,
    # whatever the stack's length (issue 17)
    store = SpillStore() if n_slabs > 1 else None
    reducer = SlabReducer(merge, fan_in=slab_size, store=store)
    held: dict[int, np.ndarray] = {}
    try:
        for i, slab in enumerate(slabs):
            nxt = set(slabs[i + 1]) if i + 1 < n_slabs else set()
            frames = [held.pop(k) if k in held else preparer.prepare(k) for k in slab]
            if depth is not None:
                for k, f in zip(slab, frames):
                    depth.update(position[k] if position else k, f)
            for k, f in zip(slab, frames):
                if k in nxt:
                    held[k] = f
            label = "fusing" if n_slabs == 1 else f"slab {i + 1}/{n_slabs}"
            if len(frames) == 1 and n_slabs > 1:
                result = frames[0]  # --slab-size 2 --slab-overlap 0 with an odd count: nothing to fuse
                steps.update(base + i + 1, label)
            else:
                result = fuser(frames, steps.within(base + i, 1, label))
            del frames
            reducer.push(result, last=i + 1 == n_slabs)
            del result
        fused = reducer.finish()
    finally:
        if store is not None:
            store.close()
    return fused, reducer.merges, preparer
