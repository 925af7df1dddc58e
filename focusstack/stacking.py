"""The ``fuse`` job: stack in, all-in-focus image out, one stack or a batch of folders.

:func:`fuse_stack` checks everything cheap first (inputs from their headers, the output path,
the weights) and only then decodes frames, so a bad call fails in well under a second and never
leaves a file behind. :func:`fuse_batch` fuses every subfolder of a root, loading the networks
once, and goes on past a bad stack.

A stack is fused in two streamed passes (docs/align.md): pass 1 reads every frame once to find
the focus order and the alignment (small per-frame results only); pass 2 reads, warps and
exposure-matches the frames of one focus-ordered slab of at most ``slab_size`` frames at a
time, fuses it, and fuses the slab results hierarchically (``focusstack.longstack``). Peak
memory is one slab plus a few slab results, whatever the number of frames. With alignment off
and no more frames than one slab, frames go to the engine exactly as read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from focusstack.align.stack import FramePreparer, analyse_stack
from focusstack.config import FuseConfig
from focusstack.engines.vaeedof import VAEEDOFEngine
from focusstack.longstack import SlabReducer, count_merges, plan_slabs

if TYPE_CHECKING:
    from focusstack.engines.decision import DecisionEngine

    Engine = VAEEDOFEngine | DecisionEngine
from focusstack.errors import (
    BatchError,
    ConfigError,
    FocusstackError,
    OutputExistsError,
    UsageError,
    WeightsError,
    classify,
)
from focusstack.io import Frame, check_output, check_stack, collect_stack, output_bit_depth, read_image, write_image
from focusstack.progress import peak_memory_mb, progress_bar

#: Most frames one stack may have (a sanity bound on the command line, not a memory limit:
#: frames are streamed).
MAX_STACK_FRAMES = 100_000


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

    def to_dict(self) -> dict:
        return asdict(self)


def build_engine(config: FuseConfig) -> Engine:
    """Resolve and load the weights for ``config.engine`` and wrap them in a backend."""
    if config.engine == "decision":
        from focusstack.engines.decision import DecisionEngine

        return DecisionEngine()
    from focusstack.backends.onnx_backend import make_backend
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
    return HybridEngine(vaeedof, fsb=fsb, keb=keb, save_steps=config.save_steps)


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


def fuse_stack(
    inputs: Sequence[Path],
    output: Path,
    config: FuseConfig = FuseConfig(),
    *,
    engine: Engine | None = None,
) -> FuseResult:
    """Fuse one stack (a folder, or 2 or more files) into ``output`` and return a summary."""
    t0 = time.perf_counter()
    output = Path(output)
    paths = collect_stack([Path(p) for p in inputs])
    infos = check_stack(paths, max_frames=MAX_STACK_FRAMES, max_pixels=config.max_pixels)
    bit_depth = output_bit_depth(output, [i.bit_depth for i in infos])
    check_output(output, config.overwrite, paths)  # before any decoding or network work
    if config.save_steps is not None:
        check_steps_dir(config.save_steps, config.overwrite)
    timings: dict[str, float] = {"read": 0.0}

    t = time.perf_counter()
    if engine is None:
        engine = build_engine(config)
        timings["load_weights"] = time.perf_counter() - t
    if hasattr(engine, "set_steps_dir"):
        engine.set_steps_dir(config.save_steps)  # this stack's folder (batch: one per stack)
    n = len(paths)
    slab_size = slab_size_for(engine, config)

    def read(path: Path) -> Frame:
        tr = time.perf_counter()
        frame = read_image(path, max_pixels=config.max_pixels)
        timings["read"] += time.perf_counter() - tr
        return frame

    name = paths[0].parent.name or "stack"
    alignment: dict = {"enabled": False}
    focus: dict = {"files": [p.name for p in paths], "order": list(range(n)), "source": "name"}
    merges = 0
    if not config.align.enabled and n <= slab_size:
        # the plain path: frames go to the engine exactly as read
        t = time.perf_counter()
        frames = [read(p) for p in paths]
        exif, icc = frames[0].exif, frames[0].icc
        slabs = [list(range(n))]
        with progress_bar(f"fusing {name}", enabled=config.show_progress) as update:
            fused = engine.fuse([f.pixels for f in frames], on_tile=update)
        del frames
        timings["fuse"] = time.perf_counter() - t - timings["read"]
        out_w, out_h = infos[0].width, infos[0].height
    else:
        t = time.perf_counter()
        need_order = n > slab_size or (config.align.enabled and n > 2)
        label = "aligning" if config.align.enabled else "ordering"
        with progress_bar(f"{label} {name}", enabled=config.show_progress) as update:
            analysis = analyse_stack(
                paths,
                read,
                config.align,
                need_order=need_order,
                order_mode=config.focus_order,
                keep_frames=n <= slab_size,
                on_frame=update,
            )
        timings["align"] = time.perf_counter() - t - timings["read"]  # reading is timed on its own
        exif, icc = analysis.exif, analysis.icc
        order = analysis.order.order
        focus = {"files": [paths[k].name for k in order], **analysis.order.to_dict()}
        # a short stack is fused in name order (as without alignment); a long one in focus-ordered slabs
        slabs = [list(range(n))] if n <= slab_size else [[order[i] for i in s_] for s_ in plan_slabs(n, slab_size, config.slab_overlap)]
        t, read_before = time.perf_counter(), timings["read"]
        fused, merges, preparer = _fuse_slabs(engine, slabs, analysis, read, config, slab_size, name)
        timings["fuse"] = time.perf_counter() - t - (timings["read"] - read_before)
        alignment = preparer.report()
        out_w, out_h = analysis.crop.width, analysis.crop.height

    t = time.perf_counter()
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
    )


def _fuse_slabs(
    engine: Engine,
    slabs: list[list[int]],
    analysis,  # noqa: ANN001  (focusstack.align.stack.StackAnalysis)
    read,  # noqa: ANN001  (Callable[[Path], Frame])
    config: FuseConfig,
    slab_size: int,
    name: str,
) -> tuple[np.ndarray, int, FramePreparer]:
    """Pass 2: prepare and fuse one slab at a time; merge the slab results as they come.

    Only the frames of the current slab (and those it shares with the next one) and the
    waiting slab results are held. Returns ``(fused (h, w, 3) float32 in [0, 1], merges, preparer)``.
    """
    preparer = FramePreparer(analysis, read, config.align)
    n_slabs = len(slabs)
    n_merges = count_merges(n_slabs, slab_size)
    done_merges = 0

    def merge(images: list[np.ndarray], level: int) -> np.ndarray:
        nonlocal done_merges
        done_merges += 1
        with progress_bar(
            f"merging slab results {done_merges}/{n_merges} ({name})", enabled=config.show_progress
        ) as update:
            return engine.fuse(images, on_tile=update)

    reducer = SlabReducer(merge, fan_in=slab_size)
    held: dict[int, np.ndarray] = {}
    for i, slab in enumerate(slabs):
        nxt = set(slabs[i + 1]) if i + 1 < n_slabs else set()
        frames = [held.pop(k) if k in held else preparer.prepare(k) for k in slab]
        for k, f in zip(slab, frames):
            if k in nxt:
                held[k] = f
        desc = f"fusing {name}" if n_slabs == 1 else f"fusing {name} slab {i + 1}/{n_slabs}"
        if len(frames) == 1 and n_slabs > 1:
            result = frames[0]  # --slab-size 2 --slab-overlap 0 with an odd count: nothing to fuse
        else:
            with progress_bar(desc, enabled=config.show_progress) as update:
                result = engine.fuse(frames, on_tile=update)
        del frames
        reducer.push(result)
        del result
    fused = reducer.finish()
    return fused, reducer.merges, preparer


@dataclass
class BatchResult:
    fused: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def fuse_batch(
    root: Path, outdir: Path, config: FuseConfig = FuseConfig(), *, ext: str = ".tif", resume: bool = True
) -> BatchResult:
    """Fuse every subfolder of ``root`` into ``outdir/<name><ext>``.

    Existing outputs are skipped (resume) unless ``config.overwrite``. A failing stack is
    recorded and the batch goes on; if any failed, :class:`BatchError` is raised at the end with
    the summary attached as ``exc.result``.
    """
    root, outdir = Path(root), Path(outdir)
    if not root.is_dir():
        raise UsageError(f"--batch {root} is not a folder", fix="give a folder whose subfolders are stacks")
    stacks = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    if not stacks:
        raise UsageError(f"--batch {root} has no subfolders", fix="put each stack in its own subfolder of ROOT")
    if not ext.startswith("."):
        ext = "." + ext
    if not resume and not config.overwrite:
        existing = [d.name for d in stacks if (outdir / f"{d.name}{ext}").exists()]
        if existing:
            raise OutputExistsError(
                f"--no-resume: {len(existing)} outputs exist in {outdir} ({', '.join(existing[:5])})",
                fix="drop --no-resume to skip them, or pass --overwrite to replace them",
            )
    outdir.mkdir(parents=True, exist_ok=True)
    result = BatchResult()
    engine: Engine | None = None
    for stack in stacks:
        out = outdir / f"{stack.name}{ext}"
        if out.exists() and not config.overwrite:
            result.skipped.append(str(out))
            continue
        try:
            if engine is None:
                engine = build_engine(config)
            cfg = config if config.save_steps is None else replace(config, save_steps=config.save_steps / stack.name)
            result.fused.append(fuse_stack([stack], out, cfg, engine=engine).to_dict())
        except (FocusstackError, ValueError, OSError, MemoryError) as exc:
            message = exc.render() if isinstance(exc, FocusstackError) else f"{type(exc).__name__}: {exc}"
            result.failed.append({"stack": str(stack), "error": classify(exc).label, "message": message})
            if isinstance(exc, WeightsError):
                break  # no stack can succeed without weights
    if result.failed:
        err = BatchError(
            f"{len(result.failed)} of {len(stacks)} stacks failed: "
            + "; ".join(f"{Path(f['stack']).name} ({f['error']})" for f in result.failed),
            fix="see each message above; fix or remove those folders and rerun (finished stacks are skipped)",
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result
