"""The ``fuse`` job: stack in, all-in-focus image out, one stack or a batch of folders.

:func:`fuse_stack` checks everything cheap first (inputs from their headers, the output path,
the weights) and only then decodes frames, so a bad call fails in well under a second and never
leaves a file behind. :func:`fuse_batch` fuses every subfolder of a root, loading the networks
once, goes on past a bad stack and reports every stack as it ends (``on_stack``); it never takes
its own output folder (or a stack folder it writes into) as a stack. :func:`plan_stack` and
:func:`plan_batch` (``--dry-run``) say what a run would do from the headers alone.

A stack is fused in two streamed passes (docs/align.md): pass 1 reads every frame once to find
the focus order and the alignment (small per-frame results only); pass 2 reads, warps and
exposure-matches the frames of one focus-ordered slab of at most ``slab_size`` frames at a
time, fuses it, and fuses the slab results hierarchically (``focusstack.longstack``). Peak
memory is one slab plus a few slab results, whatever the number of frames. With alignment off
and no more frames than one slab, frames go to the engine exactly as read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from focusstack.align.stack import FramePreparer, analyse_stack
from focusstack.config import FuseConfig
from focusstack.longstack import SlabReducer, SpillStore, count_merges, plan_slabs

if TYPE_CHECKING:
    from focusstack.engines.decision import DecisionEngine
    from focusstack.engines.vaeedof import VAEEDOFEngine

    Engine = VAEEDOFEngine | DecisionEngine
from focusstack.errors import (
    BatchError,
    ConfigError,
    DependencyError,
    FocusstackError,
    ImageWriteError,
    OutputExistsError,
    UsageError,
    WeightsError,
    classify,
)
from focusstack.io import (
    OUTPUT_EXTENSIONS,
    Frame,
    check_output,
    check_stack,
    collect_stack,
    output_bit_depth,
    read_image,
    write_image,
)
from focusstack.progress import StepProgress, peak_memory_mb, step_progress

if TYPE_CHECKING:
    from focusstack.report import StackThumbs

log = logging.getLogger("focusstack.stack")

#: Most frames one stack may have (a sanity bound on the command line, not a memory limit:
#: frames are streamed).
MAX_STACK_FRAMES = 100_000
#: Frames whose shorter side is below this (px) are fused without alignment and in name order:
#: registration and the focus-order search need a few cells of 8 px (a 1x1 or 8x8 "stack" has
#: nothing to register). Decided here, before any frame is decoded, with one warning.
ALIGN_MIN_SIDE = 16


@dataclass
class FuseResult:
    inputs: list[str]
    output: str
    engine: str
    device: str
    precision: str
    width: int
    height: int
    frames: int
    bit_depth: int
    tiles: dict
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    #: Size of the input frames (``width``/``height`` are the output's, after cropping).
    input_width: int = 0
    input_height: int = 0
    #: Per-frame transforms, gains and the crop (``{"enabled": False}`` with ``--no-align``).
    alignment: dict = field(default_factory=dict)
    #: ``files``: names from one end of the focus range to the other; ``order``: their indices in
    #: name order; ``source``: how the order was found (see focusstack.longstack.FocusOrder).
    focus_order: dict = field(default_factory=dict)
    #: The slabs (file names) fused one at a time, and how many merges of slab results followed.
    slabs: list = field(default_factory=list)
    merges: int = 0
    #: Why ``precision`` was chosen (``--precision auto`` decides from CPU features).
    precision_reason: str = ""
    #: Documented fallbacks taken instead of trained networks (hybrid without FSB/KEB weights),
    #: one sentence each; empty when every network was the trained one.
    fallbacks: list = field(default_factory=list)
    #: ``--depth-map``: the file(s) written and how the values read (see focusstack.depthmap).
    depth_map: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def build_engine(config: FuseConfig) -> Engine:
    """Resolve and load the weights for ``config.engine`` and wrap them in a backend."""
    if config.engine == "decision":
        from focusstack.engines.decision import DecisionEngine

        return DecisionEngine()
    # the network engines are imported here, not at the top: the default decision engine
    # does not pay for them (about 17 ms of every start, issue 17)
    from focusstack.backends.onnx_backend import make_backend
    from focusstack.engines.vaeedof import VAEEDOFEngine
    from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir

    fusion = load_fusion(config.fusion_weights)  # first: refuses untrained weights, no download
    vae = load_vae(resolve_vae_dir(config.vae_weights))
    backend = make_backend(config.backend, vae, fusion.model, device=config.device, precision=config.precision)
    vaeedof = VAEEDOFEngine(backend, config.tiles)
    if config.engine == "vaeedof":
        return vaeedof
    from focusstack.engines.hybrid import HybridEngine
    from focusstack.refinement.refine import RefineConfig, load_refine_networks

    fsb, keb, _ = load_refine_networks(RefineConfig(show_progress=False))  # trained ones when shipped
    engine = HybridEngine(vaeedof, fsb=fsb, keb=keb, save_steps=config.save_steps)
    fallbacks = []
    if fsb is None:
        fallbacks.append("fsb: no trained FSB weights (models/fsb or $FOCUSSTACK_FSB_DIR); the decision map is the mask")
    if keb is None:
        fallbacks.append("keb: no trained KEB weights (models/keb or $FOCUSSTACK_KEB_DIR); the classical blur estimate is used")
    if fallbacks:
        log.warning("hybrid engine fallback: %s", "; ".join(fallbacks))
    engine.fallbacks = fallbacks  # type: ignore[attr-defined]  (reported in FuseResult.fallbacks)
    return engine


def check_steps_dir(folder: Path, overwrite: bool) -> None:
    """``--save-steps``: refuse a folder that already holds files, unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--save-steps {folder} is a file", expected="a folder (created if missing)",
                         actual="an existing file", fix="give a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"the --save-steps folder {folder} is not empty",
            expected="an empty or new folder",
            actual=f"{sum(1 for _ in folder.iterdir())} entries",
            fix="pass --overwrite to replace its step images, or choose another folder",
        )


def slab_size_for(engine: Engine, config: FuseConfig) -> int:
    """``config.slab_size``, checked against the engine's limit (the Fusion U-Net takes 7)."""
    limit = getattr(getattr(engine, "backend", None), "frames", None)
    if limit is not None and config.slab_size > limit:
        raise ConfigError(
            f"--slab-size {config.slab_size} is more than the {engine.name} engine takes at once",
            expected=f"2..{limit}",
            actual=str(config.slab_size),
            fix=f"pass --slab-size {limit} or less",
        )
    return config.slab_size


def _tiny_frames(config: FuseConfig, width: int, height: int) -> FuseConfig:
    """Frames below :data:`ALIGN_MIN_SIDE`: alignment and the focus-order search are skipped
    (one warning); other frames: ``config`` unchanged."""
    if min(width, height) >= ALIGN_MIN_SIDE or (not config.align.enabled and config.focus_order == "name"):
        return config
    log.warning(
        "frames are %dx%d px, below the %d px that alignment and the focus-order search need: "
        "fusing them unaligned, in name order", width, height, ALIGN_MIN_SIDE,
    )
    return replace(config, align=replace(config.align, enabled=False), focus_order="name")


def _new_folders(config: FuseConfig, outputs: Sequence[Path | None]) -> set[Path]:
    """``config.make_folder``: the missing output folders, created only when the result is
    written (a failed run leaves no empty folder); their nearest existing parent must be a
    writable folder. Without it: nothing (``check_output`` refuses a missing folder)."""
    if not config.make_folder:
        return set()
    missing = set()
    for out in outputs:
        if out is None or Path(out).parent.exists():
            continue
        folder = Path(out).parent
        anc = folder
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir() or not os.access(anc, os.W_OK | os.X_OK):
            raise ImageWriteError(
                f"{out}: cannot create the output folder {folder}",
                expected=f"{anc} to be a writable folder",
                actual="not a folder" if not anc.is_dir() else "not writable",
                fix="choose an output path in a folder you can write to",
            )
        missing.add(folder)
    return missing


def _make_folders(folders: set[Path]) -> None:
    for folder in sorted(folders):
        folder.mkdir(parents=True, exist_ok=True)
        log.info("created the output folder %s", folder)


def check_side_outputs(
    config: FuseConfig, protected: Sequence[Path], new_folders: set[Path] = frozenset(), output: Path | None = None
) -> None:
    """``--depth-map``/``--depth-map-preview``: suffix, folder and existence, before any work."""
    from focusstack.depthmap import check_depth_path

    if config.depth_map is not None:
        check_depth_path(config.depth_map)
        if Path(config.depth_map).parent not in new_folders:
            check_output(config.depth_map, config.overwrite, protected)
    if config.depth_map_preview is not None:
        from focusstack.io.formats import OUTPUT_FORMATS

        if Path(config.depth_map_preview).suffix.lower() not in OUTPUT_FORMATS:
            raise UsageError(
                f"--depth-map-preview {config.depth_map_preview}: unsupported image type",
                expected=" | ".join(sorted(OUTPUT_FORMATS)),
                actual=repr(Path(config.depth_map_preview).suffix),
                fix="name it with .png, .jpg or .tif",
            )
        if Path(config.depth_map_preview).parent not in new_folders:
            check_output(config.depth_map_preview, config.overwrite, protected)
    sides = [p for p in (output, config.depth_map, config.depth_map_preview) if p is not None]
    if len({Path(os.path.abspath(p)) for p in sides}) < len(sides):
        raise UsageError("-o, --depth-map and --depth-map-preview name the same file", fix="give each a name of its own")


def fuse_stack(
    inputs: Sequence[Path],
    output: Path,
    config: FuseConfig = FuseConfig(),
    *,
    engine: Engine | None = None,
    thumbs: StackThumbs | None = None,
) -> FuseResult:
    """Fuse one stack (a folder, or 2 or more files) into ``output`` and return a summary.

    ``thumbs`` (``--report``) is shown every frame as it is read and the fused result.
    """
    t0 = time.perf_counter()
    output = Path(output)
    ours = [p for p in (output, config.depth_map, config.depth_map_preview) if p is not None]
    paths = collect_stack([Path(p) for p in inputs], exclude=ours)  # our outputs are never frames
    infos = check_stack(paths, max_frames=MAX_STACK_FRAMES, max_pixels=config.max_pixels)
    bit_depth = output_bit_depth(output, [i.bit_depth for i in infos])
    new_folders = _new_folders(config, [output, config.depth_map, config.depth_map_preview])
    if output.parent not in new_folders:
        check_output(output, config.overwrite, paths)  # before any decoding or network work
    check_side_outputs(config, paths, new_folders, output)
    if config.save_steps is not None:
        check_steps_dir(config.save_steps, config.overwrite)
    config = _tiny_frames(config, infos[0].width, infos[0].height)
    timings: dict[str, float] = {"read": 0.0}

    t = time.perf_counter()
    if engine is None:
        engine = build_engine(config)
        timings["load_weights"] = time.perf_counter() - t
    if hasattr(engine, "set_steps_dir"):
        engine.set_steps_dir(config.save_steps, protected=paths)  # this stack's folder (batch: one per stack)
    n = len(paths)
    slab_size = slab_size_for(engine, config)

    def read(path: Path) -> Frame:
        tr = time.perf_counter()
        frame = read_image(path, max_pixels=config.max_pixels)
        timings["read"] += time.perf_counter() - tr
        if thumbs is not None:
            thumbs.on_frame(path, frame.pixels)
        return frame

    depth = None
    if config.depth_map is not None or config.depth_map_preview is not None:
        from focusstack.depthmap import DepthAccumulator

        depth = DepthAccumulator(n)

    name = paths[0].parent.name or "stack"
    alignment: dict = {"enabled": False}
    focus: dict = {"files": [p.name for p in paths], "order": list(range(n)), "source": "name"}
    merges = 0
    plain = not config.align.enabled and n <= slab_size
    # every step is known up front: analysis (one per frame), one fuse per slab, the merges
    n_slabs = 1 if n <= slab_size else len(plan_slabs(n, slab_size, config.slab_overlap))
    total = 1 if plain else n + n_slabs + count_merges(n_slabs, slab_size)
    with step_progress(f"fusing {name}", total, enabled=config.show_progress) as steps:
        if plain:
            # the plain path: frames go to the engine exactly as read
            t = time.perf_counter()
            frames = [read(p) for p in paths]
            exif, icc = frames[0].exif, frames[0].icc
            slabs = [list(range(n))]
            if depth is not None:
                for k, f in enumerate(frames):
                    depth.update(k, f.pixels)
            fused = engine.fuse([f.pixels for f in frames], on_tile=steps.within(0, 1, "fusing"))
            del frames
            timings["fuse"] = time.perf_counter() - t - timings["read"]
            out_w, out_h = infos[0].width, infos[0].height
        else:
            t = time.perf_counter()
            need_order = (n > slab_size or (config.align.enabled and n > 2)) and config.focus_order != "name"
            label = "aligning" if config.align.enabled else "ordering"
            # the analysis may register twice (along the focus order): its share is n steps either way
            worst = 2 * n if config.align.enabled and need_order else n

            def on_frame(done: int, _total: int) -> None:
                steps.update(min(n, n * done / worst), label)

            analysis = analyse_stack(
                paths,
                read,
                config.align,
                need_order=need_order,
                order_mode=config.focus_order,
                keep_frames=n <= slab_size,
                on_frame=on_frame,
            )
            steps.update(n, label)
            timings["align"] = time.perf_counter() - t - timings["read"]  # reading is timed on its own
            exif, icc = analysis.exif, analysis.icc
            order = analysis.order.order
            focus = {"files": [paths[k].name for k in order], **analysis.order.to_dict()}
            # a short stack is fused in name order (as without alignment); a long one in focus-ordered slabs
            slabs = [list(range(n))] if n <= slab_size else [[order[i] for i in s_] for s_ in plan_slabs(n, slab_size, config.slab_overlap)]
            t, read_before = time.perf_counter(), timings["read"]
            position = {k: j for j, k in enumerate(order)}
            fused, merges, preparer = _fuse_slabs(engine, slabs, analysis, read, config, slab_size, steps, n, depth, position)
            timings["fuse"] = time.perf_counter() - t - (timings["read"] - read_before)
            alignment = preparer.report()
            out_w, out_h = analysis.crop.width, analysis.crop.height
        if not config.align.enabled and min(infos[0].width, infos[0].height) < ALIGN_MIN_SIDE:
            alignment = {"enabled": False, "skipped": f"frames below {ALIGN_MIN_SIDE} px"}

    if thumbs is not None:
        thumbs.on_output(fused)
    t = time.perf_counter()
    _make_folders(new_folders)
    depth_info = None
    if depth is not None:
        depth_info = _write_depth(depth, config, (fused.shape[0], fused.shape[1]), paths)
    write_image(
        output,
        fused,
        bit_depth=bit_depth,
        exif=exif,
        icc=icc,
        overwrite=config.overwrite,
        protected=paths,
    )
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    backend = getattr(engine, "backend", engine)  # the decision engine has no networks
    return FuseResult(
        inputs=[str(p) for p in paths],
        output=str(output),
        engine=engine.name,
        device=backend.device,
        precision=backend.precision,
        width=out_w,
        height=out_h,
        frames=n,
        bit_depth=bit_depth,
        tiles={"size": config.tiles.tile, "stride": config.tiles.stride},
        timings_s={k: round(v, 3) for k, v in timings.items()},
        peak_memory_mb=round(peak_memory_mb(), 1),
        input_width=infos[0].width,
        input_height=infos[0].height,
        alignment=alignment,
        focus_order=focus,
        slabs=[[paths[k].name for k in s_] for s_ in slabs],
        merges=merges,
        precision_reason=getattr(backend, "precision_reason", ""),  # engines without one (test doubles)
        fallbacks=list(getattr(engine, "fallbacks", [])),
        depth_map=depth_info,
    )


def _write_depth(depth, config: FuseConfig, shape: tuple[int, int], paths: Sequence[Path]) -> dict:  # noqa: ANN001
    from focusstack.depthmap import write_depth_map, write_depth_preview

    dm = depth.finish(shape)
    info = dm.summary()
    if config.depth_map is not None:
        write_depth_map(config.depth_map, dm, overwrite=config.overwrite, protected=paths)
        info["file"] = str(config.depth_map)
    if config.depth_map_preview is not None:
        write_depth_preview(config.depth_map_preview, dm, overwrite=config.overwrite, protected=paths)
        info["preview"] = str(config.depth_map_preview)
    return info


def _fuse_slabs(
    engine: Engine,
    slabs: list[list[int]],
    analysis,  # noqa: ANN001  (focusstack.align.stack.StackAnalysis)
    read,  # noqa: ANN001  (Callable[[Path], Frame])
    config: FuseConfig,
    slab_size: int,
    steps: StepProgress,
    base: int,
    depth=None,  # noqa: ANN001  (focusstack.depthmap.DepthAccumulator | None)
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
        return engine.fuse(images, on_tile=steps.within(at, 1, f"merging {done_merges}/{n_merges}"))

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
                result = engine.fuse(frames, on_tile=steps.within(base + i, 1, label))
            del frames
            reducer.push(result, last=i + 1 == n_slabs)
            del result
        fused = reducer.finish()
    finally:
        if store is not None:
            store.close()
    return fused, reducer.merges, preparer


@dataclass
class BatchResult:
    fused: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    #: Subfolders of ROOT not taken as stacks, with the reason (our own output folders).
    excluded: list[dict] = field(default_factory=list)
    #: ``--report``: the contact sheet written.
    report: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StackEvent:
    """One stack of a batch has ended: ``status`` is ``wrote``, ``skipped`` or ``failed``.
    ``index`` counts from 1 to ``total`` (the number of stacks, known before the first one)."""

    index: int
    total: int
    name: str
    status: str
    output: str
    message: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """``[3/8] name: wrote PATH`` / ``skipped (exists)`` / ``failed: why; fix: ...``."""
        head = f"[{self.index}/{self.total}] {self.name}: "
        if self.status == "wrote":
            return head + f"wrote {self.output} ({self.seconds:.1f} s)"
        if self.status == "skipped":
            return head + f"skipped ({self.output} exists)"
        return head + "failed: " + "; ".join(part for part in self.message.splitlines() if part)

    def to_dict(self) -> dict:
        return {"event": "stack", **asdict(self)}


def batch_ext(ext: str) -> str:
    """``tif`` or ``.tif`` -> ``.tif``; anything that is not an output format is a usage error."""
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in OUTPUT_EXTENSIONS:
        raise UsageError(
            f"--ext {ext.lstrip('.')} is not an output format",
            expected=" | ".join(sorted(e.lstrip(".") for e in OUTPUT_EXTENSIONS)),
            actual=repr(ext.lstrip(".")),
            fix="pass --ext tif, png or jpg",
        )
    return ext.lower()


def _batch_stacks(root: Path, outdir: Path, extra_dirs: Sequence[Path]) -> tuple[list[Path], list[dict]]:
    """ROOT's subfolders that are stacks, and those excluded because focusstack writes there."""
    if not root.is_dir():
        raise UsageError(f"--batch {root} is not a folder", fix="give a folder whose subfolders are stacks")
    ours = {}
    for d, why in [(outdir, "the output folder (-o)")] + [(p, "a folder this batch writes") for p in extra_dirs]:
        ours.setdefault(Path(os.path.abspath(d)), why)
    stacks, excluded = [], []
    for d in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name):
        why = ours.get(Path(os.path.abspath(d)))
        if why is None and d.resolve() in {p.resolve() for p in ours if p.exists()}:
            why = ours[next(p for p in ours if p.exists() and p.resolve() == d.resolve())]
        if why is not None:
            excluded.append({"folder": str(d), "reason": why})
        else:
            stacks.append(d)
    for e in excluded:
        log.warning("not a stack: %s is %s; its files are never fused", e["folder"], e["reason"])
    if not stacks:
        extra = f" (excluded: {', '.join(Path(e['folder']).name for e in excluded)})" if excluded else ""
        raise UsageError(f"--batch {root} has no subfolders{extra}", fix="put each stack in its own subfolder of ROOT")
    return stacks, excluded


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(
            f"--batch writes one file per stack into the folder -o {outdir}, which is a file",
            expected="a folder (created if missing)",
            actual="an existing file",
            fix=f"pass a folder, e.g. -o {outdir.with_suffix('')}_fused",
        )


def fuse_batch(
    root: Path,
    outdir: Path,
    config: FuseConfig = FuseConfig(),
    *,
    ext: str = ".tif",
    resume: bool = True,
    report: Path | None = None,
    depth_dir: Path | None = None,
    preview_dir: Path | None = None,
    on_stack: Callable[[StackEvent], None] | None = None,
    ray: bool = False,
    ray_address: str | None = None,
) -> BatchResult:
    """Fuse every subfolder of ``root`` into ``outdir/<name><ext>``.

    Existing outputs are skipped (resume) unless ``config.overwrite``. A failing stack is
    recorded and the batch goes on; ``on_stack`` hears of every stack as it ends. If any failed,
    :class:`BatchError` is raised at the end (every failure with its message) with the summary
    attached as ``exc.result``. ``outdir`` (and ``depth_dir``/``preview_dir``) are never taken
    as stacks when they lie inside ``root``. ``report``: write the HTML contact sheet there.
    ``depth_dir``/``preview_dir``: one ``<name>.depth.png`` / ``<name>.depth-preview.png``
    per stack.

    ``ray`` (implied by ``ray_address``): each stack to fuse is one Ray task (the ``ray`` extra),
    fused and written in the worker with the same ``config``; results are gathered as tasks
    finish (``on_stack`` hears of them in that order), the summary lists them in stack order.
    Without ``ray_address`` and no Ray running, a local Ray is started (and shut down after).
    ROOT and OUTDIR must lie on a file system every node sees at the same path.
    """
    root, outdir = Path(root), Path(outdir)
    ext = batch_ext(ext)  # before anything: a bad --ext is refused once, not once per stack
    use_ray = ray or ray_address is not None
    if use_ray:
        _import_ray()  # a missing extra is refused before any work
    _check_outdir(outdir)
    for d, opt in ((depth_dir, "--depth-map"), (preview_dir, "--depth-map-preview")):
        if d is not None and Path(d).exists() and not Path(d).is_dir():
            raise UsageError(f"{opt} {d}: with --batch this is a folder (one map per stack), and it is a file",
                             expected="a folder", actual="an existing file", fix=f"pass a folder for {opt}")
    if report is not None:
        _check_report(Path(report), config.overwrite)
    stacks, excluded = _batch_stacks(root, outdir, [p for p in (depth_dir, preview_dir, config.save_steps) if p is not None])
    if not resume and not config.overwrite:
        existing = [d.name for d in stacks if (outdir / f"{d.name}{ext}").exists()]
        if existing:
            raise OutputExistsError(
                f"--no-resume: {len(existing)} outputs exist in {outdir} ({', '.join(existing[:5])})",
                fix="drop --no-resume to skip them, or pass --overwrite to replace them",
            )
    outdir.mkdir(parents=True, exist_ok=True)
    for d in (depth_dir, preview_dir):
        if d is not None:
            Path(d).mkdir(parents=True, exist_ok=True)
    total = len(stacks)
    outcomes: dict[int, _StackOutcome] = {}
    stop = False
    engines: dict = {}  # the local batch builds its engine once, at the first stack to fuse

    def done(outcome: _StackOutcome) -> bool:
        """Record one stack's end; False once no further stack can succeed (missing weights)."""
        outcomes[outcome.event.index] = outcome
        if on_stack is not None:
            on_stack(outcome.event)
        return not outcome.weights_failed

    todo: list[tuple[int, Path, Path]] = []
    for index, stack in enumerate(stacks, 1):
        out = outdir / f"{stack.name}{ext}"
        if out.exists() and not config.overwrite:
            thumbs = None
            if report is not None:
                from focusstack.report import StackThumbs

                thumbs = StackThumbs()
                _thumb_existing(thumbs, out, config)
            done(_StackOutcome(StackEvent(index, total, stack.name, "skipped", str(out)), skipped=str(out),
                               thumbs=thumbs))
        elif use_ray:
            todo.append((index, stack, out))
        else:
            if not done(_fuse_one(index, total, stack, out, config, depth_dir, preview_dir, report is not None,
                                  engines)):
                stop = True
                break  # no stack can succeed without weights
    if use_ray and todo and not stop:
        _run_ray_batch(todo, total, config, depth_dir, preview_dir, report is not None, ray_address, done)
    result = BatchResult(excluded=excluded)
    entries = []
    for index in sorted(outcomes):
        o = outcomes[index]
        if o.fused is not None:
            result.fused.append(o.fused)
        if o.skipped is not None:
            result.skipped.append(o.skipped)
        if o.failure is not None:
            result.failed.append(o.failure)
        entries.append(_entry(o.event, o.thumbs))
    if report is not None:
        from focusstack.report import write_report

        write_report(Path(report), entries, title=f"focusstack batch: {root}", overwrite=True)
        result.report = str(report)
    if result.failed:
        err = BatchError(
            f"{len(result.failed)} of {total} stacks failed:\n"
            + "\n".join(
                f"  {Path(f['stack']).name} ({f['error']}): " + "; ".join(x for x in f["message"].splitlines() if x)
                for f in result.failed
            ),
            fix="fix or remove those folders and rerun (finished stacks are skipped)",
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


@dataclass
class _StackOutcome:
    """One stack's end in a batch (it pickles: a Ray task returns it)."""

    event: StackEvent
    fused: dict | None = None
    skipped: str | None = None
    failure: dict | None = None
    thumbs: object = None
    weights_failed: bool = False


#: A Ray worker's engine, kept for its next task of the same config: {"config": ..., "engine": ...}.
_WORKER_ENGINE: dict = {}


def _fuse_one(index: int, total: int, stack: Path, out: Path, config: FuseConfig, depth_dir: Path | None,
              preview_dir: Path | None, with_thumbs: bool, engines: dict) -> _StackOutcome:
    """Fuse one stack of a batch into ``out``; every failure is caught and returned."""
    t = time.perf_counter()
    thumbs = None
    if with_thumbs:
        from focusstack.report import StackThumbs

        thumbs = StackThumbs()
    try:
        if engines.get("config") != config:
            engines.clear()
            engines["engine"] = build_engine(config)
            engines["config"] = config
        cfg = replace(
            config,
            save_steps=None if config.save_steps is None else config.save_steps / stack.name,
            depth_map=None if depth_dir is None else Path(depth_dir) / f"{stack.name}.depth.png",
            depth_map_preview=None if preview_dir is None else Path(preview_dir) / f"{stack.name}.depth-preview.png",
        )
        res = fuse_stack([stack], out, cfg, engine=engines["engine"], thumbs=thumbs)
        event = StackEvent(index, total, stack.name, "wrote", str(out), seconds=time.perf_counter() - t)
        return _StackOutcome(event, fused=res.to_dict(), thumbs=thumbs)
    except (FocusstackError, ValueError, OSError, MemoryError) as exc:
        message = exc.render() if isinstance(exc, FocusstackError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FocusstackError):
            message += "\nfix: rerun this stack alone with --debug and report the traceback"
        failure = {"stack": str(stack), "error": classify(exc).label, "message": message}
        event = StackEvent(index, total, stack.name, "failed", str(out), message=message,
                           seconds=time.perf_counter() - t)
        return _StackOutcome(event, failure=failure, thumbs=thumbs, weights_failed=isinstance(exc, WeightsError))


def _import_ray():  # noqa: ANN202
    try:
        import ray  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise DependencyError(
            "--ray needs the optional `ray` package, which is not installed; nothing was fused",
            expected="`import ray` to work",
            actual="ModuleNotFoundError",
            fix="pip install 'focusstack[ray]'  (or pip install 'ray>=2.9'), or drop --ray",
        ) from None
    return ray


def _ray_fuse_task(cwd: str, index: int, total: int, stack: str, out: str, config: FuseConfig,
                   depth_dir: str | None, preview_dir: str | None, with_thumbs: bool) -> _StackOutcome:
    """A Ray task: fuse one stack in the worker (relative paths are the driver's, via ``cwd``)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return _fuse_one(index, total, Path(stack), Path(out), config,
                         None if depth_dir is None else Path(depth_dir),
                         None if preview_dir is None else Path(preview_dir), with_thumbs, _WORKER_ENGINE)
    finally:
        os.chdir(before)


def _run_ray_batch(todo: list[tuple[int, Path, Path]], total: int, config: FuseConfig, depth_dir: Path | None,
                   preview_dir: Path | None, with_thumbs: bool, address: str | None,
                   done: Callable[[_StackOutcome], bool]) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_ray_fuse_task)
        cfg_ref = ray.put(config)
        cwd = os.getcwd()
        pending = [
            task.remote(cwd, index, total, str(stack), str(out), cfg_ref,
                        None if depth_dir is None else str(depth_dir),
                        None if preview_dir is None else str(preview_dir), with_thumbs)
            for index, stack, out in todo
        ]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                if not done(ray.get(ref)):
                    for rest in pending:  # no stack can succeed without weights
                        ray.cancel(rest)
                    return
    finally:
        if started_here:
            ray.shutdown()


def _entry(event: StackEvent, thumbs):  # noqa: ANN001, ANN202
    from focusstack.report import ReportEntry

    return ReportEntry(event.name, event.status, event.output if event.status != "failed" else None,
                       event.message, thumbs)


def _thumb_existing(thumbs, out: Path, config: FuseConfig) -> None:  # noqa: ANN001
    """A skipped stack's row shows its existing output (the frames are not read again)."""
    try:
        thumbs.on_output(read_image(out, max_pixels=config.max_pixels).pixels)
    except FocusstackError as exc:
        log.warning("--report: cannot show %s: %s", out, exc.what)


#: Marks an HTML file as a focusstack report (a rerun may replace its own report).
REPORT_MARK = "<title>focusstack batch:"


def _check_report(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {path}: the report is an HTML file", expected=".html", actual=repr(path.suffix),
                         fix=f"name it {path.with_suffix('.html').name}")
    if not path.parent.is_dir():
        raise UsageError(f"--report {path}: folder {path.parent} does not exist", fix=f"mkdir -p {path.parent}")
    if path.exists() and not overwrite:
        try:
            ours = REPORT_MARK in path.read_text(errors="replace")[:2000]
        except OSError:
            ours = False
        if not ours:
            raise OutputExistsError(f"--report {path}: the file exists and is not a focusstack report",
                                    fix="choose another name, or pass --overwrite")


# ---- --dry-run ------------------------------------------------------------------------------


def plan_stack(inputs: Sequence[Path], output: Path, config: FuseConfig = FuseConfig()) -> dict:
    """What :func:`fuse_stack` would do, from headers only (no pixel is decoded, nothing written).

    Returns ``{"frames": [...names in natural order...], "order": "name", "size": [w, h],
    "output": path, "action": "write" | "skip (exists)" | "fail", "reason": str}``. The focus
    order is found from pixels, so the frames are listed in natural (name) order.
    """
    output = Path(output)
    plan: dict = {"inputs": [str(p) for p in inputs], "frames": [], "order": "name (the focus order is found from the pixels while fusing)",
                  "output": str(output), "action": "write", "reason": ""}
    try:
        ours = [p for p in (output, config.depth_map, config.depth_map_preview) if p is not None]
        paths = collect_stack([Path(p) for p in inputs], exclude=ours)
        plan["frames"] = [p.name for p in paths]
        infos = check_stack(paths, max_frames=MAX_STACK_FRAMES, max_pixels=config.max_pixels)
        plan["size"] = [infos[0].width, infos[0].height]
        plan["bit_depth"] = output_bit_depth(output, [i.bit_depth for i in infos])
        if output.exists() and not config.overwrite and not any(output.resolve() == p.resolve() for p in paths):
            plan["action"], plan["reason"] = "skip (exists)", "the output exists (--overwrite replaces it)"
            return plan
        if config.make_folder and not output.parent.exists():
            plan["creates"] = str(output.parent)
        else:
            check_output(output, config.overwrite, paths)
        if config.depth_map is not None:
            plan["depth_map"] = str(config.depth_map)
        if config.depth_map_preview is not None:
            plan["depth_map_preview"] = str(config.depth_map_preview)
    except FocusstackError as exc:
        plan["action"], plan["reason"] = "fail", "; ".join(x for x in exc.render().splitlines() if x)
    return plan


def plan_batch(
    root: Path, outdir: Path, config: FuseConfig = FuseConfig(), *, ext: str = ".tif",
    depth_dir: Path | None = None, preview_dir: Path | None = None,
) -> dict:
    """:func:`plan_stack` for every stack of ``root`` (``--batch --dry-run``), plus the
    excluded folders. Usage errors (bad ``--ext``, ``-o`` a file) are raised as in a real run."""
    root, outdir = Path(root), Path(outdir)
    ext = batch_ext(ext)
    _check_outdir(outdir)
    stacks, excluded = _batch_stacks(root, outdir, [p for p in (depth_dir, preview_dir, config.save_steps) if p is not None])
    plans = []
    cfg = replace(config, make_folder=True)
    for stack in stacks:
        c = replace(
            cfg,
            depth_map=None if depth_dir is None else Path(depth_dir) / f"{stack.name}.depth.png",
            depth_map_preview=None if preview_dir is None else Path(preview_dir) / f"{stack.name}.depth-preview.png",
        )
        plans.append({"stack": stack.name, **plan_stack([stack], outdir / f"{stack.name}{ext}", c)})
    return {"root": str(root), "outdir": str(outdir), "stacks": plans, "excluded": excluded}
