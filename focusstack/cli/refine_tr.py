"""`focusstack refine-tr`: parse options, build a RefineConfig, call the job ``focusstack.jobs.refine_tr.refine_tr``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.cli.common import err_console, handle_errors, print_json
from focusstack.cli.options import Command, DebugOpt, FLAG, JsonOpt, NoProgressOpt, OverwriteOpt, choice, value
from focusstack.config import FSB_DIR_ENV, KEB_DIR_ENV
from focusstack.lazy import call
from focusstack.refinement.refine import MASK_SOURCES, ORDERS, R_INIT_METHODS, SIGMA_SOURCES, RefineConfig

_D = RefineConfig()

# refine-tr imports focusstack.refinement.refine (numpy, cv2) anyway: the tuples stay there.
MaskSource = choice("MaskSource", MASK_SOURCES)
SigmaSource = choice("SigmaSource", SIGMA_SOURCES)
RInit = choice("RInit", R_INIT_METHODS)
Order = choice("Order", ORDERS)

HELP = f"""Remove the transition-region halo of a near/far pair (Liu et al.: foreground mask, PSF
sigma, diffusion elimination Eq. 13-15).

FRAME FRAME: the near- and the far-focused frame, in any order (the near one is found from the
pixels: it shows the occluding silhouette sharp; --order given trusts the order, near first).
Without --init, R_init is the decision engine's fusion (or Eq. 9 with the mask: --r-init eq9);
with --init FILE another method's fusion of the same pair is refined.

Mask: the FSB (--fsb-weights, ${FSB_DIR_ENV} or the shipped focusstack/models/fsb); without
trained weights, the decision engine's map. Sigma: the KEB (--keb-weights, ${KEB_DIR_ENV} or
the shipped focusstack/models/keb); without trained weights, a least-squares fit of the blurred
near frame to the far frame. --json says which were used. Output bit depth follows the inputs
(16-bit kept for .tif/.png).
"""


def register(app: typer.Typer) -> None:
    @app.command("refine-tr", help=HELP, no_args_is_help=True, cls=Command)
    def refine_tr_cmd(
        frames: list[Path] = typer.Argument(..., help="The near- and far-focused frames (any order).", show_default=False),
        output: Path = typer.Option(..., "--output", "-o", help="Output image (.tif, .png, .jpg).", show_default=False),
        init: Optional[Path] = typer.Option(None, "--init", help="Refine this fused result (another method's) instead of the decision engine's.", show_default=False),
        save_mask: Optional[Path] = typer.Option(None, "--save-mask", help="Write the near frame's foreground mask here (white = foreground, input size).", show_default=False),
        save_diffusion: Optional[Path] = typer.Option(None, "--save-diffusion", help="Write the removed component here, as 0.5 + S (mid-grey = nothing removed).", show_default=False),
        mask_source: Annotated[MaskSource, typer.Option("--mask-source", help="auto: FSB when trained weights exist, else the decision map.")] = _D.mask_source,  # type: ignore[valid-type]
        sigma_source: Annotated[SigmaSource, typer.Option("--sigma-source", help="auto: the classical fit (blur the near frame to match the far one inside the foreground) when its error shows a minimum, else the KEB when trained weights exist.")] = _D.sigma_source,  # type: ignore[valid-type]
        r_init: Annotated[RInit, typer.Option("--r-init", help="R_init without --init: the decision engine's fusion, or Eq. 9 with the mask.")] = _D.r_init,  # type: ignore[valid-type]
        order: Annotated[Order, typer.Option("--order", help="Which frame is the near one: auto finds it from the pixels; given: the first frame.")] = _D.order,  # type: ignore[valid-type]
        fsb_weights: Optional[Path] = typer.Option(None, "--fsb-weights", help=f"FSB folder (model.safetensors + config.json); else ${FSB_DIR_ENV} or the shipped focusstack/models/fsb.", show_default=False),
        keb_weights: Optional[Path] = typer.Option(None, "--keb-weights", help=f"KEB folder; else ${KEB_DIR_ENV} or the shipped focusstack/models/keb.", show_default=False),
        work_size: int = typer.Option(_D.work_size, "--work-size", help="FSB and KEB run with the long side at most this (px)."),
        linear_light: bool = typer.Option(_D.linear_light, "--linear-light/--no-linear-light", help="Eliminate the diffusion in linear light (sRGB decoded).", metavar=FLAG),
        overwrite: OverwriteOpt = _D.overwrite,
        json_out: JsonOpt = False,
        quiet: NoProgressOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            config = RefineConfig(
                mask_source=value(mask_source),
                sigma_source=value(sigma_source),
                r_init=value(r_init),
                order=value(order),
                work_size=work_size,
                linear_light=linear_light,
                fsb_weights=fsb_weights,
                keb_weights=keb_weights,
                overwrite=overwrite,
                show_progress=not quiet,
            )
            res = call("focusstack.jobs.refine_tr:refine_tr", frames, output, config, init=init, save_mask=save_mask, save_diffusion=save_diffusion)
            if json_out:
                print_json(res.to_dict())
            elif not quiet:
                err_console.print(
                    f"wrote {res.output} ({res.width}x{res.height}, {res.bit_depth}-bit); near = {res.near.name}, "
                    f"mask: {res.info['mask_source']}, sigma {res.sigma_px:.2f} px ({res.info['sigma_source']})"
                )
