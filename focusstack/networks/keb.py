"""Kernel Estimation Branch (KEB) of the transition-region paper (Liu et al., Fig. 3a, Eq. 12).

Regresses the standard deviation ``sigma`` (px) of the isotropic Gaussian PSF (Eq. 2) with
which the foreground is blurred in the far-focus frame.

Architecture (:class:`KEBConfig`, saved as ``config.json`` beside the weights):

* input convolution (3x3) ``in_channels -> channels``;
* 2 multi-scale residual blocks (:class:`~focusstack.networks.msrb.MSRB`);
* spatial attention: ``a = sigmoid(conv7x7([mean_c(h), max_c(h), mask]))``, ``h <- h * a``
  (suppresses background features, as the paper says; the foreground mask is one of its inputs);
* global pooling to ``(B, C)``: the attention-weighted mean ``sum(h a) / sum(a)`` (a plain
  average of ``h * a`` would change with the foreground's area);
* 3 fully connected layers ``C -> hidden -> hidden/2 -> 1`` and a softplus, so ``sigma > 0``.

Inputs (:data:`KEB_INPUTS`): the *sharp* view of the foreground (the near frame) RGB in [0, 1],
the *blurred* view (the far frame) RGB in [0, 1], the foreground mask in [0, 1], and a bank of
re-blur residuals ``10 |G_s * Y_sharp - Y_blurred|`` for the sigmas ``s`` in ``bank``
(``focusstack.refinement.features.keb_input``). The paper does not list KEB's inputs; a sharp
reference makes the estimate well posed, and its KEB check (blur a clean image with ``K_gt``,
estimate ``K_pd``) is the special case ``sharp = I_clear``, ``blurred = I_1``, ``mask = 1``.
Input ``(B, 7 + len(bank), H, W)`` float32 -> ``(B,)`` float32 sigma in px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from focusstack.networks.msrb import MSRB
from focusstack.networks.tr_configs import DEFAULT_BANK, KEB_INPUTS, KEBConfig  # noqa: F401  (re-exported)


class KEB(nn.Module):
    """``(B, 7, H, W)`` float32 -> ``(B,)`` float32 sigma in px (see module docstring)."""

    def __init__(self, cfg: KEBConfig = KEBConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.blocks = nn.Sequential(*[MSRB(c, s) for s in cfg.scales])
        self.attn = nn.Conv2d(3, 1, 7, padding=3)
        self.fc = nn.Sequential(
            nn.Linear(c, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.hidden // 2),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden // 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"KEB input must be (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")
        mask = x[:, 6:7]  # sharp RGB, blurred RGB, then the mask
        h = self.blocks(self.conv_in(x))
        a = torch.sigmoid(self.attn(torch.cat([h.mean(1, keepdim=True), h.amax(1, keepdim=True), mask], dim=1)))
        pooled = (h * a).sum((2, 3)) / (a.sum((2, 3)) + 1e-6)
        return F.softplus(self.fc(pooled)).squeeze(1)
