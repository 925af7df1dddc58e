"""Weight resolution order, sha256 pinning, the download path (with local file:// URLs) and our
own safetensors folders."""

from __future__ import annotations

import shutil

import pytest
import torch

from focusstack.errors import WeightsError
from focusstack.networks import weights as W
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv(W.VAE_DIR_ENV, raising=False)
    monkeypatch.setenv("FOCUSSTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(W.VAE_URL_ENV, "file:///nonexistent/")
    return tmp_path


def test_user_dir_wins(isolated, vae_dir, monkeypatch):
    monkeypatch.setenv(W.VAE_DIR_ENV, str(isolated / "elsewhere"))
    assert W.resolve_vae_dir(vae_dir) == vae_dir


def test_env_dir_is_used_and_checked(isolated, vae_dir, monkeypatch):
    monkeypatch.setenv(W.VAE_DIR_ENV, str(vae_dir))
    assert W.resolve_vae_dir() == vae_dir
    monkeypatch.setenv(W.VAE_DIR_ENV, str(isolated / "empty"))
    with pytest.raises(WeightsError, match="FOCUSSTACK_VAE_DIR") as e:
        W.resolve_vae_dir()
    assert "missing" in str(e.value)


def test_download_fills_the_cache_from_a_url(isolated, vae_dir, monkeypatch):
    monkeypatch.setenv(W.VAE_URL_ENV, vae_dir.as_uri() + "/")
    got = W.resolve_vae_dir()
    assert got == isolated / "cache" / "taef2"
    for name, digest in W.VAE_FILES.items():
        assert W.sha256_file(got / name) == digest
    # second call: served from the cache, no download needed
    monkeypatch.setenv(W.VAE_URL_ENV, "file:///nonexistent/")
    assert W.resolve_vae_dir() == got


def test_download_with_wrong_bytes_is_rejected_and_leaves_nothing(isolated, vae_dir, monkeypatch):
    mirror = isolated / "mirror"
    shutil.copytree(vae_dir, mirror)
    (mirror / "taef2_encoder.pth").chmod(0o644)
    (mirror / "taef2_encoder.pth").write_bytes(b"evil")
    monkeypatch.setenv(W.VAE_URL_ENV, mirror.as_uri() + "/")
    with pytest.raises(WeightsError, match="sha256"):
        W.resolve_vae_dir()
    assert not (isolated / "cache" / "taef2" / "taef2_encoder.pth").exists()
    assert not list((isolated / "cache" / "taef2").glob("*.part"))


def test_failed_download_says_where_it_looked(isolated):
    with pytest.raises(WeightsError) as e:
        W.resolve_vae_dir()
    msg = str(e.value)
    assert "FOCUSSTACK_VAE_DIR" in msg and "cache" in msg and "fix:" in msg


def test_no_download_when_disallowed(isolated):
    with pytest.raises(WeightsError, match="not found"):
        W.resolve_vae_dir(allow_download=False)


def test_model_dir_round_trip_and_checks(tmp_path):
    torch.manual_seed(0)
    cfg = FusionUNetConfig(channels=(32, 32, 64), attention_heads=2)
    m = FusionUNet(cfg)
    W.save_model_dir(m, cfg.to_dict(), tmp_path / "m", metadata={"trained_steps": 5})
    loaded = W.load_fusion(tmp_path / "m")
    assert loaded.metadata["trained_steps"] == "5"
    for k, v in m.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v)
    # a config that does not fit the weights
    (tmp_path / "m" / "config.json").write_text('{"channels": [32, 64, 64], "attention_heads": 2}')
    with pytest.raises(WeightsError, match="corrupt"):  # SHA256SUMS catches the edit first
        W.load_fusion(tmp_path / "m")


def test_safetensors_only(tmp_path):
    # our weights are never pickles: a .pt in the folder is not looked at
    (tmp_path / "m").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "m" / "model.pt")
    with pytest.raises(WeightsError, match="model.safetensors"):
        W.load_fusion(tmp_path / "m")


def test_failed_download_names_the_urls_to_fetch_by_hand_and_the_folder(isolated, monkeypatch):
    monkeypatch.setenv(W.VAE_URL_ENV, "file:///nonexistent/mirror/")
    with pytest.raises(WeightsError) as e:
        W.resolve_vae_dir()
    fix = e.value.fix or ""
    cached = isolated / "cache" / "taef2"
    assert "file:///nonexistent/mirror/taef2_encoder.pth" in fix
    assert "file:///nonexistent/mirror/taef2_decoder.pth" in fix
    assert f"into {cached}" in fix
    assert e.value.expected and e.value.actual  # expected, found and fix
    with pytest.raises(WeightsError) as e:
        W.resolve_vae_dir(allow_download=False)
    assert "file:///nonexistent/mirror/taef2_decoder.pth" in (e.value.fix or "") and str(cached) in e.value.fix


def test_missing_model_weights_fix_names_the_shipped_models_and_the_export(tmp_path):
    from focusstack.config import models_dir

    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError) as e:
        W.load_fusion(tmp_path / "empty")
    fix = e.value.fix or ""
    assert "training issue" not in str(e.value)
    for env in ("$FOCUSSTACK_FUSION_DIR", "$FOCUSSTACK_FSB_DIR", "$FOCUSSTACK_KEB_DIR"):
        assert env in fix
    assert str(models_dir()) in fix and "reinstall focusstack" in fix
    assert "focusstack train fusion|fsb|keb --export DIR" in fix
    assert "model.safetensors" in (e.value.expected or "")
