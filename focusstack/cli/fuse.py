"""`focusstack fuse`: parse options, build a FuseConfig, call the job (``focusstack.jobs.fuse``,
``focusstack.jobs.batch`` with --batch) through a lazy reference: the help never imports numpy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from focusstack.cli.common import err_console, handle_errors, print_json, print_result, setup_output
from focusstack.cli.options import (
    FLAG,
    Command,
    AlignModelOpt,
    AlignOpt,
    BackendOpt,
    DebugOpt,
    DeviceOpt,
    EngineOpt,
    Ext,
    ExposureOpt,
    FocusOrderOpt,
    FusionWeightsOpt,
    JsonOpt,
    KeepSizeOpt,
    MaxPixelsOpt,
    OverwriteOpt,
    PrecisionOpt,
    ProgressMode,
    ProgressOpt,
    QuietOpt,
    RayAddressOpt,
    RayOpt,
    TileOpt,
    VaeWeightsOpt,
    VerboseOpt,
    value,
)
from focusstack.config import FSB_DIR_ENV, FUSION_DIR_ENV, KEB_DIR_ENV, VAE_DIR_ENV, AlignConfig, FuseConfig, TileConfig
from focusstack.errors import BatchError, UsageError
from focusstack.lazy import call
from focusstack.progress import emit_json

if TYPE_CHECKING:
    from focusstack.jobs.batch import StackEvent

_D = FuseConfig()
_T = TileConfig()
_A = AlignConfig()

HELP = f"""Fuse a focus stack into one all-in-focus image.

INPUT is a folder of frames or 2 or more frame files (RAW, TIFF, PNG, JPEG), taken in natural sort order; all frames must share one size. Frames are aligned to the middle frame of the focus order (--align-model, crop to the area all frames cover unless --keep-size) and their exposure and white balance matched, unless --no-align; a transform is kept only when it measurably improves the match over leaving the frame as it is, so registered stacks are never resampled. Frames under 16 px are fused unaligned, in name order. Stacks longer than --slab-size are fused in focus-ordered slabs whose results are fused again. The output format follows OUTPUT's extension: .tif/.tiff (16 bit when any input is 16-bit or RAW), .png (8 or 16 bit), .jpg (8 bit); a missing output folder is created. The first frame's EXIF and ICC profile are kept where the format allows.

With --batch ROOT, every subfolder of ROOT is one stack and writes OUTDIR/<name>.<ext>; OUTDIR inside ROOT is never taken as a stack. Each stack prints one line on stderr as it ends (wrote, skipped, failed with the reason and the fix); finished outputs are skipped, a bad stack is reported and the batch goes on (exit 1 if any failed, every failure listed again). --report FILE.html writes a contact sheet. --ray (the `ray` extra) fuses each stack as a Ray task, on a local Ray or the cluster at --ray-address, with the same outputs, lines and resume; ROOT and OUTDIR must be on a file system every node shares.

--dry-run lists the stacks, their frames (name order), outputs and what would be skipped, from the headers alone.

The result (wrote ..., or the batch summary) goes to stdout, or JSON with --json; progress and logs to stderr.

Weights (hybrid, vaeedof; the default decision engine needs none): TAEF2 from --vae-weights, ${VAE_DIR_ENV}, the user cache, or a download (sha256-pinned); the Fusion U-Net from --fusion-weights, ${FUSION_DIR_ENV} or models/fusion; hybrid's FSB and KEB from ${FSB_DIR_ENV} / ${KEB_DIR_ENV} or models/fsb, models/keb (without them: documented fallbacks, one warning, listed in --json as fallbacks).
"""


def register(app: typer.Typer) -> None:
    @app.command("fuse", help=HELP, no_args_is_help=True, cls=Command)
    def fuse(
        inputs: Annotated[Optional[list[Path]], typer.Argument(help="A folder of frames, or 2 or more frame files.", show_default=False)] = None,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (or folder with --batch).", show_default=False)] = None,
        batch: Annotated[Optional[Path], typer.Option("--batch", help="Fuse every subfolder of this folder (one stack each).", show_default=False)] = None,
        engine: EngineOpt = _D.engine,
        save_steps: Annotated[Optional[Path], typer.Option("--save-steps", help="hybrid: write the decision map, confidence, trust and each engine's output (16-bit PNGs) into this folder.", show_default=False)] = None,
        backend: BackendOpt = _D.backend,
        device: DeviceOpt = _D.device,
        precision: PrecisionOpt = _D.precision,
        tile: TileOpt = _T.tile,
        align: AlignOpt = _A.enabled,
        align_model: AlignModelOpt = _A.model,
        keep_size: KeepSizeOpt = _A.keep_size,
        exposure: ExposureOpt = _A.exposure,
        focus_order: FocusOrderOpt = _D.focus_order,
        slab_size: Annotated[int, typer.Option("--slab-size", help="Most frames fused at once; longer stacks are fused in focus-ordered slabs (at most 7 for vaeedof).")] = _D.slab_size,
        slab_overlap: Annotated[int, typer.Option("--slab-overlap", help="Frames shared by consecutive slabs.")] = _D.slab_overlap,
        depth_map: Annotated[Optional[Path], typer.Option("--depth-map", help="Write the focus-order index of the sharpest frame per pixel (smoothed, inpainted where no frame is sharp) as a 16-bit .png/.tif: value / 65535 * (frames - 1). With --batch: a folder, <name>.depth.png per stack.", show_default=False)] = None,
        depth_map_preview: Annotated[Optional[Path], typer.Option("--depth-map-preview", help="The depth map in a colour map (turbo: blue = first frame of the focus order). With --batch: a folder, <name>.depth-preview.png per stack.", show_default=False)] = None,
        overwrite: OverwriteOpt = _D.overwrite,
        resume: Annotated[bool, typer.Option("--resume/--no-resume", help="--batch: skip stacks whose output exists (the default). --no-resume refuses to start if any output exists, unless --overwrite.", metavar=FLAG)] = True,
        ext: Annotated[Ext, typer.Option("--ext", help="Output format in --batch mode.")] = "tif",  # type: ignore[valid-type]
        report: Annotated[Optional[Path], typer.Option("--report", help="--batch: write an HTML contact sheet here (per stack: the output beside its sharpest frame, linked to the full files).", show_default=False)] = None,
        ray: RayOpt = False,
        ray_address: RayAddressOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done (stacks, frames in name order, outputs, skips) from the headers alone; write nothing.", metavar=FLAG)] = False,
        vae_weights: VaeWeightsOpt = None,
        fusion_weights: FusionWeightsOpt = None,
        max_pixels: MaxPixelsOpt = _D.max_pixels,
        json_out: JsonOpt = False,
        progress: ProgressOpt = "auto",
        verbose: VerboseOpt = 0,
        quiet: QuietOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        setup_output(verbose=verbose, quiet=quiet, progress=value(progress))
        with handle_errors(debug):
            if output is None:
                raise UsageError("no output given", expected="-o FILE (or -o FOLDER with --batch)", actual="none",
                                 fix="pass -o stacked.tif, or -o OUTDIR with --batch ROOT")
            config = FuseConfig(
                engine=value(engine),
                save_steps=save_steps,
                backend=value(backend),
                device=value(device),
                precision=value(precision),
                tiles=TileConfig(tile=tile),
                overwrite=overwrite,
                vae_weights=vae_weights,
                fusion_weights=fusion_weights,
                max_pixels=max_pixels,
                show_progress=not quiet,
                align=AlignConfig(enabled=align, model=value(align_model), keep_size=keep_size, exposure=exposure),
                slab_size=slab_size,
                slab_overlap=slab_overlap,
                focus_order=value(focus_order),
                depth_map=None if batch is not None else depth_map,
                depth_map_preview=None if batch is not None else depth_map_preview,
                make_folder=True,
            )
            if batch is not None:
                if inputs:
                    raise UsageError("give either INPUT... or --batch ROOT, not both", fix="drop INPUT or --batch")
                _batch(batch, output, config, ext=value(ext), resume=resume, report=report, depth_dir=depth_map,
                       preview_dir=depth_map_preview, dry_run=dry_run, json_out=json_out, quiet=quiet,
                       json_progress=value(progress) == ProgressMode("json").value, ray=ray, ray_address=ray_address)
                return
            if report is not None:
                raise UsageError("--report is a --batch option", fix="drop --report, or fuse with --batch ROOT")
            if ray or ray_address is not None:
                raise UsageError("--ray is a --batch option", expected="--batch ROOT with --ray",
                                 actual="a single stack", fix="drop --ray, or fuse with --batch ROOT")
            if not inputs:
                raise UsageError("no INPUT given", fix="pass a folder of frames or 2 or more files, or --batch ROOT")
            if dry_run:
                plan = call("focusstack.jobs.fuse:plan_stack", inputs, output, config)
                if json_out:
                    print_json(plan)
                else:
                    _print_plan(plan)
                return
            res = call("focusstack.jobs.fuse:fuse_stack", inputs, output, config)
            if json_out:
                print_json(res.to_dict())
            else:
                print_result(f"wrote {res.output} ({res.width}x{res.height}, {res.bit_depth}-bit) in {res.timings_s['total']:.1f} s")
                if res.depth_map:
                    for key in ("file", "preview"):
                        if key in res.depth_map:
                            print_result(f"wrote {res.depth_map[key]}")


def _batch(root: Path, output: Path, config: FuseConfig, *, ext: str, resume: bool, report: Optional[Path],
           depth_dir: Optional[Path], preview_dir: Optional[Path], dry_run: bool, json_out: bool, quiet: bool,
           json_progress: bool, ray: bool = False, ray_address: Optional[str] = None) -> None:
    if dry_run:
        plan = call("focusstack.jobs.batch:plan_batch", root, output, config, ext=ext, depth_dir=depth_dir, preview_dir=preview_dir)
        if json_out:
            print_json(plan)
            return
        for e in plan["excluded"]:
            print_result(f"not a stack: {e['folder']} ({e['reason']})")
        for i, p in enumerate(plan["stacks"], 1):
            print_result(f"[{i}/{len(plan['stacks'])}] {p['stack']}")
            _print_plan(p, indent="    ")
        return

    def on_stack(event: StackEvent) -> None:  # focusstack.jobs.batch.StackEvent
        if json_progress:
            emit_json(event.to_dict())
        elif event.status == "failed" or not quiet:
            style = {"wrote": "green", "skipped": "dim", "failed": "red"}[event.status]
            err_console.print(event.line(), style=style, markup=False, highlight=False)

    try:
        result = call("focusstack.jobs.batch:fuse_batch", root, output, config, ext=ext, resume=resume, report=report, depth_dir=depth_dir,
                            preview_dir=preview_dir, on_stack=on_stack, ray=ray, ray_address=ray_address)
    except BatchError as exc:
        r = exc.result  # type: ignore[attr-defined]
        if json_out:
            print_json(r.to_dict())
        else:
            _summary(r)
        raise
    if json_out:
        print_json(result.to_dict())
    else:
        _summary(result)


def _summary(result) -> None:  # noqa: ANN001  (focusstack.jobs.batch.BatchResult)
    print_result(f"fused {len(result.fused)}, skipped {len(result.skipped)} (exist), failed {len(result.failed)}")
    if result.report:
        print_result(f"wrote {result.report}")


def _print_plan(plan: dict, indent: str = "") -> None:
    frames = plan.get("frames") or []
    size = plan.get("size")
    print_result(f"{indent}frames ({len(frames)}, {plan['order']}): {', '.join(frames) if frames else '-'}")
    if size:
        print_result(f"{indent}size: {size[0]}x{size[1]}")
    action = plan["action"]
    line = f"{indent}output: {plan['output']} ({action}"
    line += f": {plan['reason']})" if plan.get("reason") else ")"
    print_result(line)
    if plan.get("creates"):
        print_result(f"{indent}creates the folder {plan['creates']}")
    for key in ("depth_map", "depth_map_preview"):
        if plan.get(key):
            print_result(f"{indent}{key.replace('_', ' ')}: {plan[key]}")
