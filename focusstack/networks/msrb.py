"""The multi-scale residual block (MSRB) of the transition-region paper (Liu et al., Fig. 3b).

Two paths between the block's input and its residual output:

* the *common* path: ``conv3x3 -> ReLU -> conv3x3``;
* the *multi-scale* path: ``conv3x3 -> ReLU -> down(s) -> conv3x3 -> ReLU -> up(s) -> conv3x3``,
  i.e. an extra ``down - conv - up`` between its two basic convolutions, at a downsampling
  factor ``s`` (average pooling, then bilinear upsampling back to the input size). Blocks with
  different ``s`` see different scales.

``out = x + conv1x1(concat(common, multiscale))``. Input and output ``(B, C, H, W)`` float32;
any ``H, W`` (the upsampling goes back to the exact input size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MSRB(nn.Module):
    """Multi-scale residual block: ``(B, C, H, W) -> (B, C, H, W)``, see the module docstring."""

    def __init__(self, channels: int, scale: int = 2) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        c = channels
        self.scale = int(scale)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.m1 = nn.Conv2d(c, c, 3, padding=1)
        self.m2 = nn.Conv2d(c, c, 3, padding=1)
        self.m3 = nn.Conv2d(c, c, 3, padding=1)
        self.fuse = nn.Conv2d(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        common = self.c2(F.relu(self.c1(x)))
        h = F.relu(self.m1(x))
        size = h.shape[-2:]
        if self.scale > 1:
            # ceil_mode keeps a non-empty map for sizes not divisible by the scale
            h = F.avg_pool2d(h, self.scale, ceil_mode=True)
        h = F.relu(self.m2(h))
        if self.scale > 1:
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        multi = self.m3(h)
        return x + self.fuse(torch.cat([common, multi], dim=1))
