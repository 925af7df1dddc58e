"""`focusstack export-onnx`: parse options, build an ExportConfig, call the job
``focusstack.jobs.export.export_onnx`` (TAEF2 and the Fusion U-Net to ONNX, each verified against
torch) through a lazy reference: the help imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.cli.common import err_console, handle_errors, print_json
from focusstack.cli.options import Command, DebugOpt, JsonOpt, OverwriteOpt, VaeWeightsOpt, choice, value
from focusstack.config import BACKEND_PARTS, FUSION_DIR_ENV, PARTS, TOLERANCE, VAE_DIR_ENV
from focusstack.jobs.export import ExportConfig
from focusstack.lazy import call

Part = choice("Part", PARTS)

HELP = f"""Export the VAE encoder, the VAE decoder and the Fusion U-Net to ONNX (opset 18, dynamic
batch, height and width) as OUTDIR/encoder.onnx, decoder.onnx, fusion.onnx, each with a
.onnx.json sidecar (weights digest, exporter, max abs difference from torch).

Every export is run by ONNX Runtime at another shape than the export example and compared with
torch; a difference above --tolerance fails (exit 1) and leaves no file. `fuse --backend onnx`
does not need this command: it exports into the user cache (keyed by the weights' sha256) on
first use. Needs the onnx extra (onnx, onnxscript, onnxruntime).

Weights: TAEF2 from --vae-weights, ${VAE_DIR_ENV}, the user cache or a download; the Fusion U-Net
(trained only) from --fusion-weights, ${FUSION_DIR_ENV} or the shipped focusstack/models/fusion.
"""


def register(app: typer.Typer) -> None:
    @app.command("export-onnx", help=HELP, no_args_is_help=True, cls=Command)
    def export_onnx(
        output: Path = typer.Option(..., "--output", "-o", help="Folder for the .onnx files (created).", show_default=False),
        part: Annotated[Optional[list[Part]], typer.Option("--part", help="Repeatable. Default: the backend's five (the split autoencoder and the Fusion U-Net).", show_default=False)] = None,  # type: ignore[valid-type]
        tolerance: float = typer.Option(TOLERANCE, "--tolerance", help="Max abs difference from torch allowed (fp32)."),
        overwrite: OverwriteOpt = False,
        vae_weights: VaeWeightsOpt = None,
        fusion_weights: Optional[Path] = typer.Option(None, "--fusion-weights", help=f"Fusion U-Net folder (else ${FUSION_DIR_ENV} or the shipped focusstack/models/fusion).", show_default=False),
        json_out: JsonOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            config = ExportConfig(
                parts=tuple(value(p) for p in part) if part else BACKEND_PARTS,
                tolerance=tolerance,
                overwrite=overwrite,
                vae_weights=vae_weights,
                fusion_weights=fusion_weights,
            )
            res = call("focusstack.jobs.export:export_onnx", output, config)
            if json_out:
                print_json(res.to_dict())
            for info in res.parts.values():
                err_console.print(f"wrote {info.path} ({info.exporter} exporter, max abs diff from torch "
                                  f"{info.max_abs_diff:.2g} <= {info.tolerance:g}, {info.seconds:.1f} s)")
