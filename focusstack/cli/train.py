"""`focusstack train ...`: training commands (the Fusion U-Net, and the transition-region FSB and KEB).

Each command parses its options, builds its config (``focusstack.training.tr_configs``, torch-free)
and calls the one job ``focusstack.jobs.train:train`` through a lazy reference, so that
``focusstack train --help`` never imports torch.
"""


import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.cli.common import handle_errors, print_json
from focusstack.cli.options import Command, Group, DebugOpt, JsonOpt, NoProgressOpt, VaeWeightsOpt, choice, value
from focusstack.config import TRAIN_DEVICES
from focusstack.errors import UsageError
from focusstack.lazy import call
from focusstack.networks.tr_configs import FSBConfig, KEBConfig
from focusstack.training.tr_configs import TrainFSBConfig, TrainFusionConfig, TrainKEBConfig

TrainDevice = choice("TrainDevice", TRAIN_DEVICES)

train_app = typer.Typer(cls=Group, help="Train the networks focusstack ships (weights land in models/).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("fusion", cls=Command, help="Train the Fusion U-Net on a dataset from `focusstack render-dataset`. Resumes from OUT/checkpoint.")
def fusion(
    data: list[Path] = typer.Option(..., "--data", help="Rendered dataset folder (manifest.json + samples/); repeat to train on several together (validation: the first one's val split).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run folder: latent cache, checkpoints, log.jsonl.", show_default=False),
    steps: int = typer.Option(None, "--steps", help="Total optimisation steps.", show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Patches per step.", show_default=False),
    crop: int = typer.Option(None, "--crop", help="Latent patch size (image px / 8).", show_default=False),
    lr: float = typer.Option(None, "--lr", help="Peak AdamW learning rate.", show_default=False),
    val_every: int = typer.Option(None, "--val-every", help="Validate the EMA weights every N steps.", show_default=False),
    max_train_samples: int = typer.Option(None, "--max-train-samples", help="Use only the first N training samples (0: all).", show_default=False),
    val_samples: int = typer.Option(None, "--val-samples", help="Validation samples scored during training.", show_default=False),
    pixel_weight: float = typer.Option(None, "--pixel-weight", help="Weight of the optional pixel loss (L1 through the frozen TAEF2 decoder on a few patches per batch); 0 (the default): latent L1 only.", show_default=False),
    pixel_patches: int = typer.Option(None, "--pixel-patches", help="Patches per batch that get the pixel loss.", show_default=False),
    threads: int = typer.Option(None, "--threads", help="Torch threads (0: torch's default).", show_default=False),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from an exported model folder (e.g. models/fusion) when OUT has no checkpoint.", show_default=False),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the EMA weights here at the end (e.g. models/fusion).", show_default=False),
    vae_weights: VaeWeightsOpt = None,
    seed: int = typer.Option(0, "--seed"),
    json_out: JsonOpt = False,
    quiet: NoProgressOpt = False,
    debug: DebugOpt = False,
) -> None:
    with handle_errors(debug):
        given = _given(steps=steps, batch_size=batch_size, crop=crop, lr=lr, val_every=val_every, max_train_samples=max_train_samples, val_samples=val_samples, pixel_weight=pixel_weight, pixel_patches=pixel_patches, threads=threads)
        cfg = TrainFusionConfig(data=tuple(data), out=out, export=export, init=init, vae_weights=vae_weights, seed=seed, show_progress=not quiet, **given)
        summary = call("focusstack.jobs.train:train", "fusion", cfg)
        if json_out:
            print_json(summary)


def _given(**kw) -> dict:  # noqa: ANN003
    return {k: v for k, v in kw.items() if v is not None}


def _defaults(cls) -> dict:  # noqa: ANN001
    """Field defaults of a training config dataclass (the help texts read them from there)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _tr_command(kind: str, arch, config: type, *, help: str, data_help: str, several: bool) -> None:  # noqa: A002, ANN001
    """Register ``train fsb`` or ``train keb``: the same options, each with its own defaults
    (read from its config dataclass ``config``, which the command builds), one job call."""
    defaults = _defaults(config)

    @train_app.command(kind, cls=Command, help=help)
    def command(
        data: list[Path] = typer.Option(..., "--data", help=data_help, show_default=False, metavar=None if several else "<path>"),
        out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, log.jsonl.", show_default=False),
        steps: int = typer.Option(None, "--steps", help=f"Total optimisation steps (default {defaults['steps']}).", show_default=False),
        batch_size: int = typer.Option(None, "--batch-size", help=f"Crops per step (default {defaults['batch_size']}).", show_default=False),
        crop: int = typer.Option(None, "--crop", help=f"Crop size in px (default {defaults['crop']}).", show_default=False),
        lr: float = typer.Option(None, "--lr", help=f"Peak AdamW learning rate (default {defaults['lr']}).", show_default=False),
        channels: int = typer.Option(None, "--channels", help=f"Network width (default {arch.channels}; with --init, the init folder's).", show_default=False),
        minutes: float = typer.Option(None, "--minutes", help="Stop after this many minutes (checkpoint and export); 0: no limit.", show_default=False),
        threads: int = typer.Option(None, "--threads", help=f"Torch threads (default {defaults['threads']}).", show_default=False),
        device: Annotated[Optional[TrainDevice], typer.Option("--device", help=f"auto: CUDA when present (default {defaults['device']}).", show_default=False)] = None,  # type: ignore[valid-type]
        workers: int = typer.Option(None, "--workers", help=f"Processes that build the augmented batches; 0: in the training process, the only bit-reproducible setting (default {defaults['workers']}). Use several with --device cuda.", show_default=False),
        init: Optional[Path] = typer.Option(None, "--init", help=f"Start from an exported model folder (e.g. models/{kind}; its config.json gives the architecture; exported trained_steps count on) when OUT has no checkpoint.", show_default=False),
        export: Optional[Path] = typer.Option(None, "--export", help=f"Write the EMA weights here at the end (e.g. models/{kind}).", show_default=False),
        seed: int = typer.Option(0, "--seed"),
        json_out: JsonOpt = False,
        quiet: NoProgressOpt = False,
        debug: DebugOpt = False,
    ) -> None:
        with handle_errors(debug):
            if not several and len(data) != 1:
                raise UsageError(f"train {kind} takes one --data folder", expected="one --data", actual=f"{len(data)} given",
                                 fix="pass one rendered dataset folder")
            given = _given(steps=steps, batch_size=batch_size, crop=crop, lr=lr, channels=channels, minutes=minutes, threads=threads, device=None if device is None else value(device), workers=workers)
            cfg = config(data=tuple(data) if several else data[0], out=out, export=export, init=init, seed=seed, show_progress=not quiet, **given)
            summary = call("focusstack.jobs.train:train", kind, cfg)
            if json_out:
                print_json(summary)


_tr_command(
    "fsb", FSBConfig, TrainFSBConfig,
    help="Train the Foreground Segmentation Branch (transition-region refinement) on 2-frame renders (`render-dataset --frames-min 2 --frames-max 2`). Resumes from OUT/checkpoint.",
    data_help="Rendered 2-frame dataset folder (manifest.json + samples/); repeat to train on several together (validation: spread over all their val splits).",
    several=True,
)
_tr_command(
    "keb", KEBConfig, TrainKEBConfig,
    help="Train the Kernel Estimation Branch (transition-region refinement) on 2-frame renders plus Gaussian-blurred clean crops. Resumes from OUT/checkpoint.",
    data_help="Rendered 2-frame dataset folder (manifest.json + samples/).",
    several=False,
)
