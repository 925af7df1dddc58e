"""`focusstack fuse`: parse options, build a FuseConfig, call ``focusstack.stacking``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from focusstack.cli.common import err_console, handle_errors, print_json
from focusstack.config import (
    ALIGN_MODELS,
    BACKENDS,
    DEVICES,
    ENGINES,
    FOCUS_ORDERS,
    FUSION_DIR_ENV,
    PRECISIONS,
    VAE_DIR_ENV,
    AlignConfig,
    FuseConfig,
    TileConfig,
)
from focusstack.errors import BatchError, UsageError

_D = FuseConfig()
_T = TileConfig()
_A = AlignConfig()

HELP = f"""Fuse a focus stack into one all-in-focus image.

INPUT is a folder of frames or 2 or more frame files (RAW, TIFF, PNG, JPEG), taken in natural
sort order; all frames must share one size. Frames are aligned to the middle frame of the focus
order (--align-model, crop to the area all frames cover unless --keep-size) and their exposure
and white balance matched, unless --no-align; a transform is kept only when it measurably
improves the match over leaving the frame as it is, so registered stacks are never resampled. Stacks longer than --slab-size are fused in
focus-ordered slabs whose results are fused again. The output format follows OUTPUT's extension: .tif/.tiff
(16 bit when any input is 16-bit or RAW), .png (8 or 16 bit), .jpg (8 bit). The first frame's
EXIF and ICC profile are kept where the format allows.

With --batch ROOT, every subfolder of ROOT is one stack and writes OUTDIR/<name>.<ext>; finished
outputs are skipped, a bad stack is reported and the batch goes on (exit 1 if any failed).

Weights (hybrid, vaeedof; the default decision engine needs none): TAEF2 from --vae-weights, ${VAE_DIR_ENV}, the user cache, or a download (sha256-pinned);
the Fusion U-Net from --fusion-weights, ${FUSION_DIR_ENV} or models/fusion.
"""


def register(app: typer.Typer) -> None:
    @app.command("fuse", help=HELP, no_args_is_help=True)
    def fuse(
        inputs: Optional[list[Path]] = typer.Argument(None, help="A folder of frames, or 2 or more frame files.", show_default=False),
        output: Path = typer.Option(..., "--output", "-o", help="Output file (or folder with --batch).", show_default=False),
        batch: Optional[Path] = typer.Option(None, "--batch", help="Fuse every subfolder of this folder (one stack each).", show_default=False),
        engine: str = typer.Option(_D.engine, "--engine", help=f"Fusion engine: {' | '.join(ENGINES)}. decision (default): the sharpest frame per pixel, copied (no networks, seconds per stack, the best devbench scores: docs/quality.md); hybrid: decision plus transition-region refinement and the VAEEDOF fill where no frame is sharp (minutes on a CPU); vaeedof: the VAEEDOF paper, pure."),
        save_steps: Optional[Path] = typer.Option(None, "--save-steps", help="hybrid: write the decision map, confidence, trust and each engine's output (16-bit PNGs) into this folder.", show_default=False),
        backend: str = typer.Option(_D.backend, "--backend", help=f"{' | '.join(BACKENDS)} (vaeedof); onnx: ONNX Runtime, fp32, the onnx extra; exported on first use into the user cache."),
        device: str = typer.Option(_D.device, "--device", help=f"{' | '.join(DEVICES)}; auto picks CUDA when present."),
        precision: str = typer.Option(_D.precision, "--precision", help=f"{' | '.join(PRECISIONS)} (hybrid, vaeedof); auto: bf16 on CPUs with AMX, bf16/fp16 on CUDA, else fp32 (decided from CPU features; --json says why)."),
        tile: int = typer.Option(_T.tile, "--tile", help="Patch size in px (multiple of 64); patches overlap by a quarter."),
        align: bool = typer.Option(_A.enabled, "--align/--no-align", help="Register the frames to the middle frame of the focus order (coarse-to-fine ECC, neighbour to neighbour)."),
        align_model: str = typer.Option(_A.model, "--align-model", help=f"{' | '.join(ALIGN_MODELS)}: similarity covers camera shake and focus breathing."),
        keep_size: bool = typer.Option(_A.keep_size, "--keep-size", help="Keep the reference frame's size (edges repeat where a frame does not reach) instead of cropping to the area all frames cover."),
        exposure: bool = typer.Option(_A.exposure, "--exposure/--no-exposure", help="Match exposure and white balance (a gain per channel) to the reference frame (with --align)."),
        focus_order: str = typer.Option(_D.focus_order, "--focus-order", help=f"{' | '.join(FOCUS_ORDERS)}: auto finds the focus order from per-region sharpness, falling back to the names' order."),
        slab_size: int = typer.Option(_D.slab_size, "--slab-size", help="Most frames fused at once; longer stacks are fused in focus-ordered slabs (at most 7 for vaeedof)."),
        slab_overlap: int = typer.Option(_D.slab_overlap, "--slab-overlap", help="Frames shared by consecutive slabs."),
        overwrite: bool = typer.Option(_D.overwrite, "--overwrite", help="Replace an existing output (never an input)."),
        resume: bool = typer.Option(True, "--resume/--no-resume", help="--batch: skip stacks whose output exists (the default). --no-resume refuses to start if any output exists, unless --overwrite."),
        ext: str = typer.Option("tif", "--ext", help="Output extension in --batch mode: tif | png | jpg."),
        vae_weights: Optional[Path] = typer.Option(None, "--vae-weights", help=f"Folder with taef2_encoder.pth and taef2_decoder.pth (else ${VAE_DIR_ENV}, cache, download).", show_default=False),
        fusion_weights: Optional[Path] = typer.Option(None, "--fusion-weights", help=f"Folder with the Fusion U-Net's model.safetensors + config.json (else ${FUSION_DIR_ENV} or models/fusion).", show_default=False),
        max_pixels: int = typer.Option(_D.max_pixels, "--max-pixels", help="Refuse frames with more decoded pixels than this (checked from the header)."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary to stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    ) -> None:
        from focusstack.stacking import fuse_batch, fuse_stack

        with handle_errors(debug):
            config = FuseConfig(
                engine=engine,
                save_steps=save_steps,
                backend=backend,
                device=device,
                precision=precision,
                tiles=TileConfig(tile=tile),
                overwrite=overwrite,
                vae_weights=vae_weights,
                fusion_weights=fusion_weights,
                max_pixels=max_pixels,
                show_progress=not quiet,
                align=AlignConfig(enabled=align, model=align_model, keep_size=keep_size, exposure=exposure),
                slab_size=slab_size,
                slab_overlap=slab_overlap,
                focus_order=focus_order,
            )
            if batch is not None:
                if inputs:
                    raise UsageError("give either INPUT... or --batch ROOT, not both", fix="drop INPUT or --batch")
                try:
                    result = fuse_batch(batch, output, config, ext=ext, resume=resume)
                except BatchError as exc:
                    if json_out:
                        print_json(exc.result.to_dict())  # type: ignore[attr-defined]
                    raise
                if json_out:
                    print_json(result.to_dict())
                err_console.print(f"fused {len(result.fused)}, skipped {len(result.skipped)} (exist), failed 0")
                return
            if not inputs:
                raise UsageError("no INPUT given", fix="pass a folder of frames or 2 or more files, or --batch ROOT")
            res = fuse_stack(inputs, output, config)
            if json_out:
                print_json(res.to_dict())
            else:
                err_console.print(f"wrote {res.output} ({res.width}x{res.height}, {res.bit_depth}-bit) in {res.timings_s['total']:.1f} s")
