"""Foreground Segmentation Branch (FSB) of the transition-region paper (Liu et al., Fig. 3).

Segments the foreground of the near-focus frame from a near/far pair.

Architecture (hyperparameters in :class:`FSBConfig`, saved as ``config.json`` beside the
weights):

* input convolution (3x3) ``in_channels -> channels``;
* 8 multi-scale residual blocks (:class:`~focusstack.networks.msrb.MSRB`), the ``i``-th with
  downsampling factor ``scales[i]``; a skip connection around every two consecutive blocks;
* a long connection from the input convolution's output to the trunk's output;
* 3 convolutions to the mask: ``3x3 C -> C``, ReLU, ``3x3 C -> C/2``, ReLU, ``3x3 C/2 -> 1``.

Input ``(B, in_channels, H, W)`` float32 (see :data:`FSB_INPUTS`: near RGB in [0, 1], far RGB in
[0, 1], and ``tanh`` of the focus-measure difference in [-1, 1]). Output: logits
``(B, 1, H, W)``; :meth:`FSB.predict` returns the mask ``sigmoid(logits)`` in [0, 1], 1 =
foreground of the near frame. Any ``H, W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from focusstack.networks.msrb import MSRB
from focusstack.networks.tr_configs import FSB_INPUTS, FSBConfig  # noqa: F401  (re-exported)


class FSB(nn.Module):
    """``(B, in_channels, H, W)`` float32 -> logits ``(B, 1, H, W)`` float32 (see module docstring)."""

    def __init__(self, cfg: FSBConfig = FSBConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.blocks = nn.ModuleList([MSRB(c, s) for s in cfg.scales])
        self.head = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"FSB input must be (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")
        x0 = self.conv_in(x)
        h = x0
        for i in range(0, len(self.blocks), 2):
            h = h + self.blocks[i + 1](self.blocks[i](h))  # skip around every two blocks
        h = h + x0  # long connection
        return self.head(h)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> mask ``(B, 1, H, W)`` float32 in [0, 1]."""
        return torch.sigmoid(self.forward(x))


def fsb_loss(
    logits: torch.Tensor, near: torch.Tensor, far: torch.Tensor, mask_gt: torch.Tensor, lambda1: float = 2.0, lambda2: float = 8.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's Eq. 10-11: ``lambda1 * L_g + lambda2 * L_m``.

    ``L_g = mean |Lap(R_gt) - Lap(R_init)|^2`` with ``R = M near + (1 - M) far`` (Eq. 9) and the
    4-neighbour Laplacian per channel; ``L_m = mean |M_gt - M_pd|``.

    Args:
        logits: ``(B, 1, H, W)`` FSB output. near, far: ``(B, 3, H, W)`` float32 in [0, 1].
        mask_gt: ``(B, 1, H, W)`` float32 in [0, 1].
    """
    m = torch.sigmoid(logits)
    r_pd = m * near + (1 - m) * far
    r_gt = mask_gt * near + (1 - mask_gt) * far
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=near.device).expand(3, 1, 3, 3)
    d = F.conv2d(F.pad(r_gt - r_pd, (1, 1, 1, 1), mode="replicate"), lap, groups=3)
    lg = (d * d).mean()
    lm = (mask_gt - m).abs().mean()
    total = lambda1 * lg + lambda2 * lm
    return total, {"L_g": float(lg.detach()), "L_m": float(lm.detach())}
