"""`focusstack train ...`: training commands (the Fusion U-Net, and the transition-region FSB and KEB)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from focusstack.cli.common import handle_errors, print_json
from focusstack.cli.options import Command, Group, DebugOpt, JsonOpt, NoProgressOpt, VaeWeightsOpt, choice, value
from focusstack.config import TRAIN_DEVICES

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
    from focusstack.training.fusion import TrainFusionConfig, train_fusion

    with handle_errors(debug):
        given = {k: v for k, v in dict(steps=steps, batch_size=batch_size, crop=crop, lr=lr, val_every=val_every, max_train_samples=max_train_samples, val_samples=val_samples, pixel_weight=pixel_weight, pixel_patches=pixel_patches, threads=threads).items() if v is not None}
        cfg = TrainFusionConfig(data=tuple(data), out=out, export=export, init=init, vae_weights=vae_weights, seed=seed, show_progress=not quiet, **given)
        summary = train_fusion(cfg)
        if json_out:
            print_json(summary)


def _given(**kw) -> dict:  # noqa: ANN003
    return {k: v for k, v in kw.items() if v is not None}


def _defaults(cls) -> dict:  # noqa: ANN001
    """Field defaults of a training config dataclass (the help texts read them from there)."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


from focusstack.networks.tr_configs import FSBConfig, KEBConfig  # noqa: E402
from focusstack.training.tr_configs import TrainFSBConfig, TrainKEBConfig  # noqa: E402

_FSB = _defaults(TrainFSBConfig)
_KEB = _defaults(TrainKEBConfig)


@train_app.command("fsb", cls=Command, help="Train the Foreground Segmentation Branch (transition-region refinement) on 2-frame renders (`render-dataset --frames-min 2 --frames-max 2`). Resumes from OUT/checkpoint.")
def fsb(
    data: list[Path] = typer.Option(..., "--data", help="Rendered 2-frame dataset folder (manifest.json + samples/); repeat to train on several together (validation: spread over all their val splits).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, log.jsonl.", show_default=False),
    steps: int = typer.Option(None, "--steps", help=f"Total optimisation steps (default {_FSB['steps']}).", show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help=f"Crops per step (default {_FSB['batch_size']}).", show_default=False),
    crop: int = typer.Option(None, "--crop", help=f"Crop size in px (default {_FSB['crop']}).", show_default=False),
    lr: float = typer.Option(None, "--lr", help=f"Peak AdamW learning rate (default {_FSB['lr']}).", show_default=False),
    channels: int = typer.Option(None, "--channels", help=f"Network width (default {FSBConfig.channels}; with --init, the init folder's).", show_default=False),
    minutes: float = typer.Option(None, "--minutes", help="Stop after this many minutes (checkpoint and export); 0: no limit.", show_default=False),
    threads: int = typer.Option(None, "--threads", help=f"Torch threads (default {_FSB['threads']}).", show_default=False),
    device: Annotated[Optional[TrainDevice], typer.Option("--device", help=f"auto: CUDA when present (default {_FSB['device']}).", show_default=False)] = None,  # type: ignore[valid-type]
    workers: int = typer.Option(None, "--workers", help=f"Processes that build the augmented batches; 0: in the training process, the only bit-reproducible setting (default {_FSB['workers']}). Use several with --device cuda.", show_default=False),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from an exported model folder (e.g. models/fsb; its config.json gives the architecture; exported trained_steps count on) when OUT has no checkpoint.", show_default=False),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the EMA weights here at the end (e.g. models/fsb).", show_default=False),
    seed: int = typer.Option(0, "--seed"),
    json_out: JsonOpt = False,
    quiet: NoProgressOpt = False,
    debug: DebugOpt = False,
) -> None:
    from focusstack.training.fsb import TrainFSBConfig, train_fsb

    with handle_errors(debug):
        given = _given(steps=steps, batch_size=batch_size, crop=crop, lr=lr, channels=channels, minutes=minutes, threads=threads, device=None if device is None else value(device), workers=workers)
        summary = train_fsb(TrainFSBConfig(data=tuple(data), out=out, export=export, init=init, seed=seed, show_progress=not quiet, **given))
        if json_out:
            print_json(summary)


@train_app.command("keb", cls=Command, help="Train the Kernel Estimation Branch (transition-region refinement) on 2-frame renders plus Gaussian-blurred clean crops. Resumes from OUT/checkpoint.")
def keb(
    data: Path = typer.Option(..., "--data", help="Rendered 2-frame dataset folder (manifest.json + samples/).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, log.jsonl.", show_default=False),
    steps: int = typer.Option(None, "--steps", help=f"Total optimisation steps (default {_KEB['steps']}).", show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help=f"Crops per step (default {_KEB['batch_size']}).", show_default=False),
    crop: int = typer.Option(None, "--crop", help=f"Crop size in px (default {_KEB['crop']}).", show_default=False),
    lr: float = typer.Option(None, "--lr", help=f"Peak AdamW learning rate (default {_KEB['lr']}).", show_default=False),
    channels: int = typer.Option(None, "--channels", help=f"Network width (default {KEBConfig.channels}; with --init, the init folder's).", show_default=False),
    minutes: float = typer.Option(None, "--minutes", help="Stop after this many minutes (checkpoint and export); 0: no limit.", show_default=False),
    threads: int = typer.Option(None, "--threads", help=f"Torch threads (default {_KEB['threads']}).", show_default=False),
    device: Annotated[Optional[TrainDevice], typer.Option("--device", help=f"auto: CUDA when present (default {_KEB['device']}).", show_default=False)] = None,  # type: ignore[valid-type]
    workers: int = typer.Option(None, "--workers", help=f"Processes that build the augmented batches; 0: in the training process, the only bit-reproducible setting (default {_KEB['workers']}). Use several with --device cuda.", show_default=False),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from an exported model folder (e.g. models/keb; its config.json gives the architecture; exported trained_steps count on) when OUT has no checkpoint.", show_default=False),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the EMA weights here at the end (e.g. models/keb).", show_default=False),
    seed: int = typer.Option(0, "--seed"),
    json_out: JsonOpt = False,
    quiet: NoProgressOpt = False,
    debug: DebugOpt = False,
) -> None:
    from focusstack.training.keb import TrainKEBConfig, train_keb

    with handle_errors(debug):
        given = _given(steps=steps, batch_size=batch_size, crop=crop, lr=lr, channels=channels, minutes=minutes, threads=threads, device=None if device is None else value(device), workers=workers)
        summary = train_keb(TrainKEBConfig(data=data, out=out, export=export, init=init, seed=seed, show_progress=not quiet, **given))
        if json_out:
            print_json(summary)
