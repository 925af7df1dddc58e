"""The fuse pipeline end to end: CLI errors (exit code, message, no output left) and engine
properties with a seeded random Fusion U-Net (shapes and tiling only, never shipped)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from focusstack.jobs import batch as batch_job
from focusstack.jobs import fuse as fuse_job
from focusstack.backends.torch_backend import TorchBackend
from focusstack.cli.app import app
from focusstack.config import AlignConfig, FuseConfig, TileConfig
from focusstack.engines.vaeedof import VAEEDOFEngine
from focusstack.io import read_image
from focusstack.metrics import psnr
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig
from focusstack.networks.weights import save_model_dir

from conftest import shared_path

runner = CliRunner()


def _stack(folder, n=3, size=(96, 128), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"f{i + 1}.png")
    return folder


def _random_fusion(seed=0, head_scale=0.0):
    torch.manual_seed(seed)
    m = FusionUNet(FusionUNetConfig(channels=(32, 64, 64), attention_heads=2))
    if head_scale:
        with torch.no_grad():
            m.conv_out.weight.normal_(0, head_scale)
    return m


@pytest.fixture()
def random_engine(vae):
    return VAEEDOFEngine(TorchBackend(vae, _random_fusion(), device="cpu", precision="fp32"), TileConfig(tile=128))


def _assert_clean_failure(result, code, *needles, out_path=None):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for n in needles:
        assert n in result.output, (n, result.output)
    if out_path is not None:
        assert not out_path.exists()
        assert not list(out_path.parent.glob(".*.part"))


# ---- errors through the CLI -----------------------------------------------------------------


def test_missing_fusion_weights_refuses_to_run(tmp_path, vae_dir):
    stack = _stack(tmp_path / "s")
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out), "--fusion-weights", str(tmp_path / "nowhere"), "--vae-weights", str(vae_dir), "--engine", "hybrid"])
    _assert_clean_failure(r, 1, "no trained weights", "fix:", out_path=out)


def test_untrained_weights_are_refused(tmp_path, vae_dir):
    stack = _stack(tmp_path / "s")
    save_model_dir(_random_fusion(), _random_fusion().cfg.to_dict(), tmp_path / "w", metadata={"trained_steps": 0})
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out), "--fusion-weights", str(tmp_path / "w"), "--vae-weights", str(vae_dir), "--engine", "hybrid"])
    _assert_clean_failure(r, 1, "untrained", out_path=out)


def test_corrupt_fusion_weights(tmp_path, vae_dir):
    stack = _stack(tmp_path / "s")
    w = tmp_path / "w"
    save_model_dir(_random_fusion(), _random_fusion().cfg.to_dict(), w, metadata={"trained_steps": 1})
    data = bytearray((w / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (w / "model.safetensors").write_bytes(bytes(data))
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out), "--fusion-weights", str(w), "--vae-weights", str(vae_dir), "--engine", "hybrid"])
    _assert_clean_failure(r, 1, "corrupt", "model.safetensors", out_path=out)


def test_corrupt_vae_weights(tmp_path, vae_dir):
    stack = _stack(tmp_path / "s")
    w = tmp_path / "w"
    save_model_dir(_random_fusion(), _random_fusion().cfg.to_dict(), w, metadata={"trained_steps": 1})
    bad = tmp_path / "taef2"
    shutil.copytree(vae_dir, bad)
    (bad / "taef2_decoder.pth").chmod(0o644)
    with open(bad / "taef2_decoder.pth", "r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out), "--fusion-weights", str(w), "--vae-weights", str(bad), "--engine", "hybrid"])
    _assert_clean_failure(r, 1, "taef2_decoder.pth", "corrupt", "fix:", out_path=out)


def test_mismatched_sizes(tmp_path):
    stack = _stack(tmp_path / "s")
    Image.new("RGB", (50, 40)).save(stack / "f9.png")
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out)])
    _assert_clean_failure(r, 1, "f9.png", "50x40", out_path=out)


def test_one_frame(tmp_path):
    stack = _stack(tmp_path / "s", n=1)
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out)])
    _assert_clean_failure(r, 1, "f1.png", out_path=out)


def test_unreadable_file(tmp_path):
    stack = _stack(tmp_path / "s")
    (stack / "f2.png").write_text("not an image")
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out)])
    _assert_clean_failure(r, 1, "f2.png", "fix:", out_path=out)


def test_existing_output_is_kept(tmp_path):
    stack = _stack(tmp_path / "s")
    out = tmp_path / "o.png"
    out.write_bytes(b"precious")
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert out.read_bytes() == b"precious"


def test_bad_option_is_a_usage_error(tmp_path):
    stack = _stack(tmp_path / "s")
    r = runner.invoke(app, ["fuse", str(stack), "-o", str(tmp_path / "o.png"), "--tile", "100"])
    assert r.exit_code == 2 and "--tile" in r.output


def test_refine_tr_is_built():
    # refine-tr is built (tests/test_refine.py); a missing -o is a usage error, not "not built"
    r = runner.invoke(app, ["refine-tr", "x"])
    assert r.exit_code == 2 and "not built yet" not in r.output


# ---- the engine with a seeded random network ---------------------------------------------------


def test_fuse_stack_writes_16_bit_and_summary(tmp_path, random_engine):
    src = _stack(tmp_path / "s", n=2, size=(100, 140))
    out = tmp_path / "fused.tif"
    frames16 = tmp_path / "s16"
    frames16.mkdir()
    import tifffile

    for p in sorted(src.glob("*.png")):
        a = np.asarray(Image.open(p), dtype=np.uint16) * 257
        tifffile.imwrite(frames16 / (p.stem + ".tif"), a)
    cfg = FuseConfig(show_progress=False, tiles=TileConfig(tile=128), align=AlignConfig(enabled=False))  # random frames
    res = fuse_job.fuse_stack([frames16], out, cfg, engine=random_engine)
    img = tifffile.imread(out)
    assert img.dtype == np.uint16 and img.shape == (100, 140, 3)
    assert res.frames == 2 and res.bit_depth == 16 and res.width == 140
    assert set(res.timings_s) >= {"read", "fuse", "write", "total"}


def test_tiled_matches_untiled(vae):
    # a real stack crop, a random (but not trivial) head: 256 px tiles vs one piece. Only the
    # autoencoder's local stages run per patch (focusstack.engines.vaeedof), so the two agree up
    # to the patches' receptive-field truncation. Measured 55.6 dB (3.6/255 at worst); the old
    # all-per-patch pipeline gave 35 dB here.
    files = sorted(shared_path("data", "stacks", "pcb7").glob("*.jpg"))[:3]
    frames = [read_image(f).pixels[300:684, 600:984] for f in files]  # 384 px: canvas 576 px
    backend = TorchBackend(vae, _random_fusion(head_scale=0.003), device="cpu", precision="fp32")
    whole = VAEEDOFEngine(backend, TileConfig(tile=576)).fuse(frames)
    tiled = VAEEDOFEngine(backend, TileConfig(tile=256)).fuse(frames)  # 3 x 3 patches
    assert psnr(tiled, whole) >= 50.0


def test_fewer_frames_are_duplicated(random_engine):
    rng = np.random.default_rng(1)
    a = rng.random((64, 64, 3), dtype=np.float32)
    b = rng.random((64, 64, 3), dtype=np.float32)
    # with the zero head the network returns the mean of its 7 inputs: 2 frames -> a,b,a,b,a,b,a
    one = random_engine.fuse([a, b])
    assert one.shape == (64, 64, 3)
    same = random_engine.fuse([a, a])
    assert psnr(same, random_engine.fuse([a, a, a])) > 60


def test_batch_goes_on_past_a_bad_stack(tmp_path, monkeypatch, random_engine):
    root = tmp_path / "root"
    _stack(root / "a")
    _stack(root / "b", seed=1)
    bad = _stack(root / "c_bad", seed=2)
    (bad / "f2.png").write_text("broken")
    monkeypatch.setattr(batch_job, "build_engine", lambda config: random_engine)
    outdir = tmp_path / "out"
    r = runner.invoke(app, ["fuse", "--batch", str(root), "-o", str(outdir), "--ext", "png", "-q", "--json", "--no-align"])
    assert r.exit_code == 1
    assert (outdir / "a.png").is_file() and (outdir / "b.png").is_file()
    assert not (outdir / "c_bad.png").exists()
    assert "c_bad" in r.output and "f2.png" in r.output
    mtime = (outdir / "a.png").stat().st_mtime_ns
    r2 = runner.invoke(app, ["fuse", "--batch", str(root), "-o", str(outdir), "--ext", "png", "-q", "--json", "--no-align"])
    assert r2.exit_code == 1
    assert (outdir / "a.png").stat().st_mtime_ns == mtime  # finished stacks are skipped


# ---- fallbacks are reported (issue 18) --------------------------------------------------------


def test_hybrid_fallbacks_are_reported_once(monkeypatch, vae, caplog):
    import logging
    from types import SimpleNamespace

    from focusstack.engines import network

    monkeypatch.setattr(network, "load_fusion", lambda folder=None, **k: SimpleNamespace(model=_random_fusion()))
    monkeypatch.setattr(network, "resolve_vae_dir", lambda d=None, **k: d)
    monkeypatch.setattr(network, "load_vae", lambda folder: vae)
    monkeypatch.setattr(network, "load_refine_networks", lambda cfg: (None, None, {"fsb": None, "keb": None}))
    with caplog.at_level(logging.WARNING, logger="focusstack"):
        engine = fuse_job.build_engine(FuseConfig(engine="hybrid", device="cpu", precision="fp32"))
    assert [f.split(":")[0] for f in engine.fallbacks] == ["fsb", "keb"]
    warnings = [r for r in caplog.records if "fallback" in r.getMessage()]
    assert len(warnings) == 1 and "FSB" in warnings[0].getMessage() and "KEB" in warnings[0].getMessage()


def test_fuse_result_carries_the_engines_fallbacks(tmp_path):
    from focusstack.engines.decision import DecisionEngine

    engine = DecisionEngine()
    engine.fallbacks = ["keb: no trained KEB weights"]
    res = fuse_job.fuse_stack([_stack(tmp_path / "s")], tmp_path / "o.png",
                              FuseConfig(show_progress=False, align=AlignConfig(enabled=False)), engine=engine)
    assert res.to_dict()["fallbacks"] == ["keb: no trained KEB weights"]
    plain = fuse_job.fuse_stack([tmp_path / "s"], tmp_path / "p.png", FuseConfig(show_progress=False, align=AlignConfig(enabled=False)))
    assert plain.fallbacks == []
