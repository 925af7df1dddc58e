"""`focusstack render-dataset`: synthetic multi-focus stacks with ground truth (MattingMFIF-style).

This module only parses options, builds a ``RenderConfig`` and calls one job,
``focusstack.jobs.render.render_dataset``, through a lazy reference (the job imports torch;
``--help`` does not). Defaults come from ``RenderConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from focusstack.cli.common import handle_errors, print_json
from focusstack.cli.options import FLAG, Command, DebugOpt, JsonOpt, NoProgressOpt, RayAddressOpt, choice, value
from focusstack.lazy import call
from focusstack.rendering.config import RENDER_DEVICES, RENDER_ENGINES, RenderConfig

_D = RenderConfig()

RenderEngine = choice("RenderEngine", RENDER_ENGINES)
RenderDevice = choice("RenderDevice", RENDER_DEVICES)

HELP = (
    "Render a synthetic multi-focus dataset: per sample, frames focused on each of several "
    "textured planes (subjects at 1-9.5 m, a background at 10 m), an all-in-focus GT, "
    "sharpest-frame masks, a depth map and subject mattes. Thin-lens defocus in linear light "
    "with correct occlusion (defocus spread), or Cycles through bpy with --engine blender. "
    "Deterministic per --seed; finished samples are skipped when rerun. See docs/render-dataset.md for the output layout."
)


def register(app: typer.Typer) -> None:
    @app.command("render-dataset", help=HELP, no_args_is_help=True, cls=Command)
    def _cmd(
        outdir: Path = typer.Argument(..., help="Output folder (created; an existing one is resumed).",
                                      file_okay=False, dir_okay=True),
        samples: int = typer.Option(..., "--samples", "-n", min=1, help="Number of samples in the dataset."),
        resolution: int = typer.Option(_D.resolution, "--resolution", "-r",
                                       help="Frame width and height in px (a multiple of 8, 64..16384)."),
        seed: int = typer.Option(_D.seed, "--seed", min=0, help="Random seed; same seed and options, same bytes."),
        engine: Annotated[RenderEngine, typer.Option(  # type: ignore[valid-type]
            "--engine", help="Renderer (blender: Cycles through bpy, the blender extra)."
        )] = _D.engine,
        subjects: Path | None = typer.Option(
            _D.subjects, "--subjects",
            help="Folder of subject cut-outs (RGBA) or original/ + alpha/ pairs, searched recursively. "
            "Default: procedural subjects.",
        ),
        backgrounds: Path | None = typer.Option(
            _D.backgrounds, "--backgrounds", help="Folder of background photos. Default: procedural."
        ),
        workers: int = typer.Option(_D.workers, "--workers", "-j", min=1,
                                    help="Local worker processes (samples rendered in parallel)."),
        threads: int = typer.Option(_D.threads, "--threads", min=1,
                                    help="Torch threads per process (1 is best on a busy machine)."),
        frames_min: int = typer.Option(_D.frames_min, "--frames-min",
                                       help="Fewest frames per sample (subject planes + background), >= 2."),
        frames_max: int = typer.Option(_D.frames_max, "--frames-max", help="Most frames per sample."),
        fstop_min: float = typer.Option(_D.fstop_min, "--fstop-min",
                                        help="Smallest f-number (most blur); sampled log-uniformly."),
        fstop_max: float = typer.Option(_D.fstop_max, "--fstop-max", help="Largest f-number (least blur)."),
        val_fraction: float = typer.Option(
            _D.val_fraction, "--val-fraction",
            help="Fraction of samples, and of source images, kept for validation (disjoint sources).",
        ),
        device: Annotated[RenderDevice, typer.Option("--device", help="Torch device.")] = _D.device,  # type: ignore[valid-type]
        ray: bool = typer.Option(_D.ray, "--ray", help="Run samples as Ray tasks (needs the `ray` extra).", metavar=FLAG),
        ray_address: RayAddressOpt = _D.ray_address,
        png_compression: int = typer.Option(
            _D.png_compression, "--png-compression", help="zlib level of the PNGs, 0 (fastest) to 9."
        ),
        cycles_samples: int = typer.Option(
            _D.cycles_samples, "--cycles-samples",
            help="--engine blender: Cycles samples per pixel of every frame and the GT.",
        ),
        cycles_denoise: bool = typer.Option(
            _D.cycles_denoise, "--cycles-denoise/--no-cycles-denoise",
            help="--engine blender: denoise the renders with OpenImageDenoise.", metavar=FLAG,
        ),
        blender_python: str | None = typer.Option(
            _D.blender_python, "--blender-python",
            help="--engine blender: the Python that has bpy (default: $FOCUSSTACK_BLENDER_PYTHON, "
            "else this one).",
        ),
        as_json: JsonOpt = False,
        quiet: NoProgressOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            config = RenderConfig(
                samples=samples,
                resolution=resolution,
                seed=seed,
                engine=value(engine),
                subjects=subjects,
                backgrounds=backgrounds,
                workers=workers,
                threads=threads,
                frames_min=frames_min,
                frames_max=frames_max,
                fstop_min=fstop_min,
                fstop_max=fstop_max,
                val_fraction=val_fraction,
                device=value(device),
                ray=ray,
                ray_address=ray_address,
                png_compression=png_compression,
                show_progress=not quiet,
                cycles_samples=cycles_samples,
                cycles_denoise=cycles_denoise,
                blender_python=blender_python,
            )
            result = call("focusstack.jobs.render:render_dataset", outdir, config)  # imports torch
            if as_json:
                print_json(result.to_dict())
            else:
                typer.echo(
                    f"{result.samples} samples in {result.outdir} "
                    f"({result.rendered} rendered, {result.skipped} already there; "
                    f"{result.train} train, {result.val} val) in {result.seconds:.1f} s; "
                    f"manifest: {result.manifest}"
                )
