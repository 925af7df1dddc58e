"""Settings of ``focusstack train fsb`` and ``train keb``: plain dataclasses, no torch (the CLI
help reads their defaults at start-up)."""

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
