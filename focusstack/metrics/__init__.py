"""Image quality metrics.

* ``basic``: the dependency-free PSNR and SSIM used by training and tests.
* ``registry``: every metric ``eval`` knows (direction, ideal value, size limit, weight files).
* ``reference``: VAEEDOF's 11 reference metrics through piq (imported lazily).
* ``fusion``: the no-reference fusion metrics Q^MI, Q^AB/F and Q^Y, extended to N frames.
* ``masks``: mIoU of decision maps.
* ``difficulty``: VAEEDOF Figure 4's per-patch difficulty.
"""

from typing import Any

__all__ = ["psnr", "ssim"]


def __getattr__(name: str) -> Any:
    # lazy: importing focusstack.metrics.registry (the CLI does, for its help) must not load torch
    if name in __all__:
        from focusstack.metrics import basic

        return getattr(basic, name)
    raise AttributeError(f"module 'focusstack.metrics' has no attribute {name!r}")
