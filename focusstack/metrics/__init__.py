"""Image quality metrics. ``basic`` holds the dependency-free PSNR and SSIM used by training and
tests; the ``eval`` command adds the papers' full metric set."""

from focusstack.metrics.basic import psnr, ssim

__all__ = ["psnr", "ssim"]
