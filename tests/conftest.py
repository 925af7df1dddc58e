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
