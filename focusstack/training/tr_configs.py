"""Settings of ``focusstack train fusion``, ``train fsb`` and ``train keb``: plain dataclasses, no
torch (the CLI builds them and its help reads their defaults at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from focusstack.networks.tr_configs import FSBConfig, KEBConfig


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What every FSB/KEB training run shares (keyword-only): a time limit, the seed, threads,
    device and batch-building workers, where to export, what to start from, progress."""

    minutes: float = 0.0
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    workers: int = 0
    export: Path | None = None
    init: Path | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class TrainFSBConfig(RunSettings):
    """``data``: one or more rendered dataset folders (a single path is taken as a 1-tuple);
    training draws uniformly from the union of their train splits, validation takes
    ``val_samples`` samples spread evenly over the union of their val splits."""

    data: tuple[Path, ...]
    out: Path
    steps: int = 1500
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    lambda1: float = 2.0
    lambda2: float = 8.0
    val_every: int = 200
    val_samples: int = 40
    #: Network width; None: FSBConfig's default, or the --init folder's width.
    channels: int | None = None
    scales: tuple[int, ...] = field(default_factory=lambda: FSBConfig().scales)

    def __post_init__(self) -> None:
        data = (self.data,) if isinstance(self.data, (str, Path)) else tuple(self.data)
        object.__setattr__(self, "data", tuple(Path(d) for d in data))


@dataclass(frozen=True)
class TrainKEBConfig(RunSettings):
    data: Path
    out: Path
    steps: int = 1500
    batch_size: int = 16
    crop: int = 96
    lr: float = 1e-3
    synthetic_share: float = 0.5
    val_every: int = 200
    val_examples: int = 64
    clean_limit: int = 600
    #: Network width; None: KEBConfig's default, or the --init folder's width.
    channels: int | None = None
    hidden: int = 64
    scales: tuple[int, ...] = field(default_factory=lambda: KEBConfig().scales)


@dataclass(frozen=True)
class TrainFusionConfig:
    """The Fusion U-Net's training run (:func:`focusstack.training.fusion.train_fusion`)."""

    #: Rendered datasets, trained on together (validation uses the first one's val split); a
    #: single path is accepted and stored as a 1-tuple.
    data: tuple[Path, ...]
    out: Path
    steps: int = 4000
    batch_size: int = 8
    crop: int = 32  # latent px (x8 image px)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    ema_decay: float = 0.999
    ckpt_every: int = 250
    val_every: int = 500
    val_samples: int = 16
    max_train_samples: int = 0  # 0: every training sample of the dataset
    #: Start from an exported model folder (e.g. models/fusion) instead of random weights, when
    #: the run has no checkpoint yet: how a later session continues a shipped model.
    init: Path | None = None
    seed: int = 0
    channels: tuple[int, int, int] = (64, 128, 192)
    head: str = "select_residual"
    vae_weights: Path | None = None
    export: Path | None = None  # models/fusion: written at the end from the EMA weights
    show_progress: bool = True
    threads: int = 0  # 0: torch default
    #: Optional pixel loss through the frozen decoder (0: latent L1 only), on the first
    #: ``pixel_patches`` patches of a batch, a centred ``pixel_crop`` latent px window of each.
    pixel_weight: float = 0.0
    pixel_patches: int = 2
    pixel_crop: int = 16
    #: Training arithmetic. fp32 is faster than bf16 autocast for these small latent patches
    #: on this CPU (0.40 s against 0.69 s a step, measured); the encoder still runs bf16.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        data = (self.data,) if isinstance(self.data, (str, Path)) else self.data
        object.__setattr__(self, "data", tuple(Path(d) for d in data))
