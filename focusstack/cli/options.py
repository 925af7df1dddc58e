"""Options shared by the subcommands, defined once (``Annotated`` aliases, as huggingface_hub's CLI).

A subcommand writes ``json_out: JsonOpt = False`` and gets the same name, help and metavar
everywhere. Choices are :class:`enum.Enum` classes built from the tuples in
``focusstack.config`` (the one place they are defined), so ``--help`` lists them, shell
completion offers them and a bad value gets Typer's standard "Invalid value" error (exit 2).
Flags carry ``metavar=""``: the help shows no ``<bool>`` beside them. Defaults are never set
here: each command reads them from the frozen config dataclasses.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.config import (
    ALIGN_MODELS,
    BACKENDS,
    DEVICES,
    ENGINES,
    FOCUS_ORDERS,
    FUSION_DIR_ENV,
    PRECISIONS,
    VAE_DIR_ENV,
)
from focusstack.progress import PROGRESS_MODES

#: Flags show no value type in the help.
FLAG = ""


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A ``str`` Enum whose members are ``values`` (member name = value), for Typer choices."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def value(member: Enum | str) -> str:
    """The plain string of a choice (Typer passes the Enum member)."""
    return member.value if isinstance(member, Enum) else str(member)


Engine = choice("Engine", ENGINES)
Backend = choice("Backend", BACKENDS)
Device = choice("Device", DEVICES)
Precision = choice("Precision", PRECISIONS)
AlignModel = choice("AlignModel", ALIGN_MODELS)
FocusOrder = choice("FocusOrder", FOCUS_ORDERS)
#: ``--batch --ext``: the output formats (focusstack.io.OUTPUT_EXTENSIONS, without the dot).
BATCH_EXTENSIONS = ("tif", "tiff", "png", "jpg", "jpeg")
Ext = choice("Ext", BATCH_EXTENSIONS)
ProgressMode = choice("ProgressMode", PROGRESS_MODES)

# ---- output and logging (every command) ------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary to stdout (and nothing else there).", metavar=FLAG)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Errors only: no progress, no warnings, no per-stack lines but failures.", metavar=FLAG)]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log lines on stderr (-v: info, -vv: debug).", metavar=FLAG)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also FOCUSSTACK_DEBUG=1).", metavar=FLAG)]
ProgressOpt = Annotated[
    ProgressMode,  # type: ignore[valid-type]
    typer.Option(
        "--progress",
        help="Progress on stderr: auto (a bar on a terminal, plain lines elsewhere), bar, plain, json (one JSON object per step and per stack), none.",
    ),
]
#: ``-q`` of the commands other than fuse: it turns their progress bars off (and nothing else).
NoProgressOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.", metavar=FLAG)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never an input).", metavar=FLAG)]
RayOpt = Annotated[bool, typer.Option("--ray", help="--batch: fuse the stacks as Ray tasks (needs the `ray` extra); same outputs as without.", metavar=FLAG)]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option("--ray-address", help="Ray cluster address (implies --ray); default: a local Ray.", show_default=False),
]

# ---- engines and weights ------------------------------------------------------------------------

EngineOpt = Annotated[
    Engine,  # type: ignore[valid-type]
    typer.Option(
        "--engine",
        help="decision (default): the sharpest frame per pixel, copied (no networks, seconds per stack, the best devbench "
        "scores: docs/quality.md); hybrid: decision plus transition-region refinement and the VAEEDOF fill where no "
        "frame is sharp (minutes on a CPU); vaeedof: the VAEEDOF paper, pure.",
    ),
]
BackendOpt = Annotated[
    Backend,  # type: ignore[valid-type]
    typer.Option("--backend", help="hybrid, vaeedof: torch, or onnx (ONNX Runtime, fp32, the onnx extra; exported on first use into the user cache)."),
]
DeviceOpt = Annotated[
    Device,  # type: ignore[valid-type]
    typer.Option("--device", help="hybrid, vaeedof: auto picks CUDA when present; cuda without CUDA is an error. The decision engine runs on the CPU (cuda: exit 2)."),
]
PrecisionOpt = Annotated[
    Precision,  # type: ignore[valid-type]
    typer.Option("--precision", help="hybrid, vaeedof; auto: bf16 on CPUs with AMX, bf16/fp16 on CUDA, else fp32 (decided from CPU features; --json says why)."),
]
TileOpt = Annotated[int, typer.Option("--tile", help="Patch size in px (multiple of 64); patches overlap by a quarter.")]
VaeWeightsOpt = Annotated[
    Optional[Path],
    typer.Option("--vae-weights", help=f"Folder with taef2_encoder.pth and taef2_decoder.pth (else ${VAE_DIR_ENV}, cache, download).", show_default=False),
]
FusionWeightsOpt = Annotated[
    Optional[Path],
    typer.Option("--fusion-weights", help=f"Folder with the Fusion U-Net's model.safetensors + config.json (else ${FUSION_DIR_ENV} or models/fusion).", show_default=False),
]
MaxPixelsOpt = Annotated[int, typer.Option("--max-pixels", help="Refuse frames with more decoded pixels than this (checked from the header).")]

# ---- alignment ---------------------------------------------------------------------------------

AlignOpt = Annotated[bool, typer.Option("--align/--no-align", help="Register the frames to the middle frame of the focus order (coarse-to-fine ECC, neighbour to neighbour).", metavar=FLAG)]
AlignModelOpt = Annotated[
    AlignModel,  # type: ignore[valid-type]
    typer.Option("--align-model", help="similarity covers camera shake and focus breathing; affine; homography."),
]
KeepSizeOpt = Annotated[bool, typer.Option("--keep-size", help="Keep the reference frame's size (edges repeat where a frame does not reach) instead of cropping to the area all frames cover.", metavar=FLAG)]
ExposureOpt = Annotated[bool, typer.Option("--exposure/--no-exposure", help="Match exposure and white balance (a gain per channel) to the reference frame (with --align).", metavar=FLAG)]
FocusOrderOpt = Annotated[
    FocusOrder,  # type: ignore[valid-type]
    typer.Option("--focus-order", help="auto finds the focus order from per-region sharpness, falling back to the names' order; name keeps the names' order."),
]


# ---- the help option itself ----------------------------------------------------------------------

from typer.core import TyperCommand, TyperGroup  # noqa: E402


class _FlagHelp:
    """Typer shows ``<bool>`` beside its own flags (``--help``, ``--install-completion``); these classes blank every flag's metavar."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:  # --help, --version, --install-completion, every --x/--no-x
            if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
                p.metavar = FLAG
        return params


class Command(_FlagHelp, TyperCommand):
    """``app.command(..., cls=Command)``: a subcommand whose help shows no ``<bool>``."""


class Group(_FlagHelp, TyperGroup):
    """``typer.Typer(cls=Group)``: the same for the top-level app."""
