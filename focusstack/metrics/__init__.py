"""Image quality metrics.

* ``basic``: the dependency-free PSNR and SSIM used by training and tests.
* ``registry``: every metric ``eval`` knows (direction, ideal value, size limit, weight files).
* ``reference``: VAEEDOF's 11 reference metrics through piq (imported lazily).
* ``fusion``: the no-reference fusion metrics Q^MI, Q^AB/F and Q^Y, extended to N frames.
* ``masks``: mIoU of decision maps.
* ``difficulty``: VAEEDOF Figure 4's per-patch difficulty.
"""

from typing import Any

from focusstack.lazy import load

__all__ = ["psnr", "ssim"]

#: Loaded on first use: importing focusstack.metrics.registry (the CLI does, for its help) must
#: not load torch.
_LAZY = {"psnr": "focusstack.metrics.basic:psnr", "ssim": "focusstack.metrics.basic:ssim"}


def __getattr__(name: str) -> Any:  # noqa: ANN401
    if name in _LAZY:
        return load(_LAZY[name])
    raise AttributeError(f"module 'focusstack.metrics' has no attribute {name!r}")
