"""The ``fuse`` job: stack in, all-in-focus image out, one stack or a batch of folders.

:func:`fuse_stack` checks everything cheap first (inputs from their headers, the output path,
the weights) and only then decodes frames, so a bad call fails in well under a second and never
leaves a file behind. :func:`fuse_batch` fuses every subfolder of a root, loading the networks
once, and goes on past a bad stack.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from focusstack.config import MAX_FRAMES, FuseConfig
from focusstack.engines.vaeedof import VAEEDOFEngine

if TYPE_CHECKING:
    from focusstack.engines.decision import DecisionEngine

    Engine = VAEEDOFEngine | DecisionEngine
from focusstack.errors import (
    BatchError,
    FocusstackError,
    OutputExistsError,
    UsageError,
    WeightsError,
    classify,
)
from focusstack.io import check_output, check_stack, collect_stack, output_bit_depth, read_image, write_image
from focusstack.progress import peak_memory_mb, progress_bar


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
    return VAEEDOFEngine(backend, config.tiles)


def fuse_stack(
    inputs: Sequence[Path],
    output: Path,
    config: FuseConfig = FuseConfig(),
    *,
    engine: Engine | None = None,
) -> FuseResult:
    """Fuse one stack (a folder, or 2 to 7 files) into ``output`` and return a summary."""
    t0 = time.perf_counter()
    output = Path(output)
    paths = collect_stack([Path(p) for p in inputs])
    infos = check_stack(paths, max_frames=MAX_FRAMES, max_pixels=config.max_pixels)
    bit_depth = output_bit_depth(output, [i.bit_depth for i in infos])
    check_output(output, config.overwrite, paths)  # before any decoding or network work
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if engine is None:
        engine = build_engine(config)
        timings["load_weights"] = time.perf_counter() - t

    t = time.perf_counter()
    frames = [read_image(p, max_pixels=config.max_pixels) for p in paths]
    timings["read"] = time.perf_counter() - t

    t = time.perf_counter()
    with progress_bar(f"fusing {paths[0].parent.name or 'stack'}", enabled=config.show_progress) as update:
        fused = engine.fuse([f.pixels for f in frames], on_tile=update)
    timings["fuse"] = time.perf_counter() - t

    t = time.perf_counter()
    ref = frames[0]
    write_image(
        output,
        fused,
        bit_depth=bit_depth,
        exif=ref.exif,
        icc=ref.icc,
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
        width=infos[0].width,
        height=infos[0].height,
        frames=len(paths),
        bit_depth=bit_depth,
        tiles={"size": config.tiles.tile, "stride": config.tiles.stride},
        timings_s={k: round(v, 3) for k, v in timings.items()},
        peak_memory_mb=round(peak_memory_mb(), 1),
    )


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
            result.fused.append(fuse_stack([stack], out, config, engine=engine).to_dict())
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
