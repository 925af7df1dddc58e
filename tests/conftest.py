"""Shared fixtures. Real data lives in ../shared beside the checkout and is never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCUSSTACK_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not available (set FOCUSSTACK_SHARED)")
    return p


@pytest.fixture(scope="session")
def vae_dir() -> Path:
    env = os.environ.get("FOCUSSTACK_VAE_DIR")
    p = Path(env) if env else SHARED / "weights" / "taef2"
    if not (p / "taef2_encoder.pth").is_file():
        pytest.skip("TAEF2 weights not available (set FOCUSSTACK_VAE_DIR)")
    return p


@pytest.fixture(scope="session")
def vae(vae_dir):
    from focusstack.networks.weights import load_vae

    return load_vae(vae_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch with 2 threads on a busy 2-core machine runs several times slower (threads wait on
    each other); one thread keeps a test module fast anywhere. Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_fusion():
    """A small seeded Fusion U-Net with a perturbed head (so it weighs the frames): the same in
    every test module, so ONNX exports of it are shared through the export cache."""
    import torch

    from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig

    torch.manual_seed(0)
    m = FusionUNet(FusionUNetConfig(channels=(32, 64, 64), attention_heads=2))
    with torch.no_grad():
        m.conv_out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    return m.eval().requires_grad_(False)
