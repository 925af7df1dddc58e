"""The ``fuse`` job for one stack: stack in, all-in-focus image out.

:func:`fuse_stack` checks everything cheap first (inputs from their headers, the output path,
the weights) and only then decodes frames, so a bad call fails in well under a second and never
leaves a file behind; the fusion itself is ``focusstack.stack.fuse.fuse_paths``. :func:`plan_stack`
(``--dry-run``) says what a run would do from the headers alone. Batches of folders are
``focusstack.jobs.batch``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from focusstack.config import FuseConfig
from focusstack.engines.base import Engine, Stepped, Steps
from focusstack.engines.factory import build_engine
from focusstack.errors import FocusstackError, ImageWriteError, OutputExistsError, UsageError
from focusstack.io import Frame, check_output, check_stack, collect_stack, output_bit_depth, read_image, write_image
from focusstack.io.formats import OUTPUT_FORMATS
from focusstack.io.report import StackThumbs
from focusstack.io.steps import check_steps_protected, write_steps
from focusstack.progress import peak_memory_mb
from focusstack.stack.depth import DepthAccumulator, check_depth_path, write_depth_map, write_depth_preview
from focusstack.stack.fuse import fuse_paths

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
    #: ``--depth-map``: the file(s) written and how the values read (see focusstack.stack.depth).
    depth_map: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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
    if config.depth_map is not None:
        check_depth_path(config.depth_map)
        if Path(config.depth_map).parent not in new_folders:
            check_output(config.depth_map, config.overwrite, protected)
    if config.depth_map_preview is not None:
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
    on_steps = None
    if config.save_steps is not None and isinstance(engine, Stepped):
        check_steps_protected(config.save_steps, engine.step_images, paths)  # before any work
        on_steps = _steps_writer(Path(config.save_steps), paths)
    n = len(paths)

    def read(path: Path) -> Frame:
        tr = time.perf_counter()
        frame = read_image(path, max_pixels=config.max_pixels)
        timings["read"] += time.perf_counter() - tr
        if thumbs is not None:
            thumbs.on_frame(path, frame.pixels)
        return frame

    depth = None
    if config.depth_map is not None or config.depth_map_preview is not None:
        depth = DepthAccumulator(n)
    res = fuse_paths(paths, read, engine, config, name=paths[0].parent.name or "stack", depth=depth,
                     on_steps=on_steps, read_time=lambda: timings["read"])
    timings.update(res.timings)
    fused, exif, icc, slabs, alignment = res.fused, res.exif, res.icc, res.slabs, res.alignment
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
    return FuseResult(
        inputs=[str(p) for p in paths],
        output=str(output),
        engine=engine.name,
        device=engine.device,
        precision=engine.precision,
        width=res.width,
        height=res.height,
        frames=n,
        bit_depth=bit_depth,
        tiles={"size": config.tiles.tile, "stride": config.tiles.stride},
        timings_s={k: round(v, 3) for k, v in timings.items()},
        peak_memory_mb=round(peak_memory_mb(), 1),
        input_width=infos[0].width,
        input_height=infos[0].height,
        alignment=alignment,
        focus_order=res.focus,
        slabs=[[paths[k].name for k in s_] for s_ in slabs],
        merges=res.merges,
        precision_reason=getattr(engine, "precision_reason", ""),  # engines without one (test doubles)
        fallbacks=list(getattr(engine, "fallbacks", [])),
        depth_map=depth_info,
    )


def _steps_writer(folder: Path, protected: Sequence[Path]):  # noqa: ANN202
    """``on_steps`` for ``--save-steps``: the first fusion's maps into ``folder``, a long stack's
    later fusions (slabs, merges) into ``folder/call_01``, ``call_02``, ..."""

    def on_steps(index: int, steps: Steps) -> None:
        write_steps(steps, folder if index == 0 else folder / f"call_{index:02d}", protected=protected)

    return on_steps


def _write_depth(depth: DepthAccumulator, config: FuseConfig, shape: tuple[int, int], paths: Sequence[Path]) -> dict:
    dm = depth.finish(shape)
    info = dm.summary()
    if config.depth_map is not None:
        write_depth_map(config.depth_map, dm, overwrite=config.overwrite, protected=paths)
        info["file"] = str(config.depth_map)
    if config.depth_map_preview is not None:
        write_depth_preview(config.depth_map_preview, dm, overwrite=config.overwrite, protected=paths)
        info["preview"] = str(config.depth_map_preview)
    return info


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
