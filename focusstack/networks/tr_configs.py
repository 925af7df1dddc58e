"""Architectures of the transition-region networks (FSB, KEB): plain dataclasses, no torch.

Kept apart from the modules (``focusstack.networks.fsb`` / ``keb``) so that the CLI can read
their defaults for its help without importing torch (start-up time), as diffusers keeps a
model's config apart from its weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from focusstack.networks.config import ArchConfig


#: What the input channels hold, in order (the data pipeline builds them with
#: ``focusstack.refinement.features.fsb_input``).
FSB_INPUTS = ("near_rgb", "far_rgb", "tanh_focus_difference")


@dataclass(frozen=True)
class FSBConfig(ArchConfig):
    """Architecture only."""

    _kind = "FSB"

    in_channels: int = 7
    channels: int = 16
    blocks: int = 8
    scales: tuple[int, ...] = (2, 4, 8, 16, 2, 4, 8, 16)
    inputs: tuple[str, ...] = FSB_INPUTS

    def __post_init__(self) -> None:
        if self.blocks < 2 or self.blocks % 2:
            raise ValueError(f"blocks must be an even number >= 2 (skips span two blocks), got {self.blocks}")
        if len(self.scales) != self.blocks:
            raise ValueError(f"scales needs one factor per block ({self.blocks}), got {self.scales}")
        if self.channels < 2:
            raise ValueError(f"channels must be >= 2, got {self.channels}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")


KEB_INPUTS = ("sharp_rgb", "blurred_rgb", "foreground_mask", "reblur_residual_bank")
#: Default sigmas (px) of the re-blur residual bank (``focusstack.refinement.features``).
DEFAULT_BANK = (0.5, 1.0, 1.5, 2.2, 3.2, 4.6, 6.6, 9.5)


@dataclass(frozen=True)
class KEBConfig(ArchConfig):
    """Architecture only."""

    _kind = "KEB"

    in_channels: int = 7 + len(DEFAULT_BANK)
    channels: int = 32
    scales: tuple[int, ...] = (2, 4)
    hidden: int = 64
    inputs: tuple[str, ...] = KEB_INPUTS
    #: Sigmas (px) of the re-blur residual channels the input carries after the first 7.
    bank: tuple[float, ...] = DEFAULT_BANK

    def __post_init__(self) -> None:
        if len(self.scales) != 2:
            raise ValueError(f"KEB has 2 MSRBs: scales needs 2 factors, got {self.scales}")
        if self.channels < 2 or self.hidden < 2:
            raise ValueError(f"channels and hidden must be >= 2, got {self.channels}, {self.hidden}")
        if self.in_channels != 7 + len(self.bank):
            raise ValueError(f"in_channels must be 7 + len(bank) = {7 + len(self.bank)} (sharp RGB, blurred RGB, mask, residual bank), got {self.in_channels}")
