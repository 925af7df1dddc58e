"""FSB, KEB and their MSRB: shapes, configs, losses, weights round trip, training with resume,
and (when trained weights are shipped in models/) measured properties of the trained models."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.errors import WeightsError
from focusstack.networks.fsb import FSB, FSBConfig, fsb_loss
from focusstack.networks.keb import KEB, KEBConfig
from focusstack.networks.msrb import MSRB
from focusstack.networks.weights import save_model_dir
from focusstack.refinement.models import load_fsb, load_keb

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def test_msrb_keeps_shape_and_is_residual():
    torch.manual_seed(0)
    b = MSRB(8, scale=4)
    for h, w in ((16, 16), (13, 21)):
        x = torch.randn(2, 8, h, w)
        assert b(x).shape == x.shape
    with torch.no_grad():
        b.fuse.weight.zero_()
        b.fuse.bias.zero_()
    x = torch.randn(1, 8, 10, 10)
    assert torch.equal(b(x), x)  # zero branch output: identity through the residual


def test_fsb_architecture_and_config_round_trip():
    cfg = FSBConfig(channels=8)
    m = FSB(cfg)
    assert len(m.blocks) == 8 and len([c for c in m.head if isinstance(c, torch.nn.Conv2d)]) == 3
    assert FSBConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    y = m(torch.rand(2, 7, 40, 56))
    assert y.shape == (2, 1, 40, 56)
    p = m.predict(torch.rand(1, 7, 24, 24))
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    with pytest.raises(ValueError):
        FSBConfig(blocks=7, scales=(2,) * 7)
    with pytest.raises(ValueError):
        FSBConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError):
        m(torch.rand(1, 6, 16, 16))


def test_fsb_loss_terms():
    torch.manual_seed(0)
    near, far = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    gt = (torch.rand(2, 1, 32, 32) > 0.5).float()
    perfect = (gt * 2 - 1) * 30.0
    loss, parts = fsb_loss(perfect, near, far, gt)
    assert float(loss) < 1e-6 and parts["L_m"] < 1e-6
    wrong = -perfect
    loss_w, parts_w = fsb_loss(wrong, near, far, gt)
    assert parts_w["L_m"] > 0.99 and parts_w["L_g"] > 0
    assert float(loss_w) == pytest.approx(2 * parts_w["L_g"] + 8 * parts_w["L_m"], rel=1e-4)


def test_keb_shapes_and_positive_sigma():
    cfg = KEBConfig(channels=8, hidden=16)
    m = KEB(cfg)
    assert cfg.in_channels == 7 + len(cfg.bank)
    for h, w in ((32, 32), (48, 40)):
        s = m(torch.rand(3, cfg.in_channels, h, w))
        assert s.shape == (3,) and bool((s > 0).all())
    assert len(m.blocks) == 2 and len([l for l in m.fc if isinstance(l, torch.nn.Linear)]) == 3
    assert KEBConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        KEBConfig(scales=(2, 4, 8))
    with pytest.raises(ValueError):
        KEBConfig(in_channels=7)


def test_weights_round_trip_and_untrained_refused(tmp_path):
    torch.manual_seed(1)
    m = FSB(FSBConfig(channels=8))
    save_model_dir(m, m.cfg.to_dict(), tmp_path / "fsb", metadata={"trained_steps": 5})
    loaded = load_fsb(tmp_path / "fsb").model
    x = torch.rand(1, 7, 16, 16)
    assert torch.equal(loaded(x), m.eval()(x))
    k = KEB(KEBConfig(channels=8, hidden=16))
    save_model_dir(k, k.cfg.to_dict(), tmp_path / "keb", metadata={"trained_steps": 0})
    with pytest.raises(WeightsError):
        load_keb(tmp_path / "keb")
    (tmp_path / "fsb" / "config.json").write_text(json.dumps(FSBConfig(channels=16).to_dict()))
    with pytest.raises(WeightsError):  # sums no longer match
        load_fsb(tmp_path / "fsb")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from focusstack.rendering.config import RenderConfig
    from focusstack.rendering.dataset import render_dataset

    out = tmp_path_factory.mktemp("tr") / "data"
    render_dataset(out, RenderConfig(samples=4, resolution=64, seed=7, frames_min=2, frames_max=2, subject_distance_max_m=3.0, fstop_min=1.4, fstop_max=2.8, show_progress=False))
    return out


def test_reblur_residual_bank_points_at_sigma():
    from focusstack.refinement.features import KEB_BANK, reblur_residuals

    rng = np.random.default_rng(2)
    clean = cv2.GaussianBlur(rng.random((64, 64, 3)).astype(np.float32), (0, 0), 0.7)
    for sigma in (1.0, 3.2, 6.6):
        blurred = cv2.GaussianBlur(clean, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        r = reblur_residuals(clean, blurred)
        assert KEB_BANK[int(np.argmin(r.mean(axis=(1, 2))))] == sigma


def test_tr_data_batches(tiny_dataset):
    from focusstack.training.tr_data import fsb_batch, keb_batch, list_tr_samples

    s = list_tr_samples(tiny_dataset)
    assert len(s) == 4 and all(x.sigma_far > 0 for x in s)
    near, far, mask = s[0].load()
    assert near.shape == (64, 64, 3) and mask.shape == (64, 64) and 0 < mask.mean() < 1
    rng = np.random.default_rng(0)
    x, m = fsb_batch(s, rng, 3, 48)
    assert x.shape == (3, 7, 48, 48) and m.shape == (3, 1, 48, 48)
    assert float(x[:, 6].abs().max()) <= 1.0
    x, sig = keb_batch(s, [near], rng, 4, 32, synthetic_share=1.0)
    assert x.shape == (4, 7 + len(KEBConfig().bank), 32, 32) and torch.all(x[:, 6] == 1) and bool((sig >= 0.3).all())
    # synthetic examples: the blurred view is the sharp one blurred by sigma
    from focusstack.training.tr_data import KEB_SIGMA_RANGE

    assert float(sig.max()) <= KEB_SIGMA_RANGE[1]


@pytest.mark.parametrize("kind", ["fsb", "keb"])
def test_train_cli_runs_resumes_and_exports(tiny_dataset, tmp_path, kind):
    out, exp = tmp_path / "run", tmp_path / "model"
    args = ["train", kind, "--data", str(tiny_dataset), "--out", str(out), "--crop", "32", "--batch-size", "2", "--channels", "8", "-q", "--json"]
    r = runner.invoke(app, args + ["--steps", "2"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    r = runner.invoke(app, args + ["--steps", "3", "--export", str(exp)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["steps"] == 3  # resumed at 2, one more step
    model = (load_fsb if kind == "fsb" else load_keb)(exp)
    assert model.metadata["trained_steps"] == "3"
    assert (exp / "SHA256SUMS").is_file() and json.loads((exp / "config.json").read_text())["channels"] == 8
    # resuming with another architecture is a usage error that names the fix, not a traceback
    wider = [a if a != "8" else "16" for a in args]
    r = runner.invoke(app, wider + ["--steps", "4"])
    assert r.exit_code == 2 and "another architecture" in r.output and "--channels" in r.output
    assert json.loads((out / "config.json").read_text())["channels"] == 8  # the run folder is untouched


def test_train_fsb_two_datasets_with_batch_workers(tiny_dataset, tmp_path):
    """Two --data folders pool their samples; --workers builds batches in worker processes and
    the run still checkpoints, validates and exports like the in-process path."""
    import shutil

    second = tmp_path / "second"
    shutil.copytree(tiny_dataset, second)
    out, exp = tmp_path / "run", tmp_path / "model"
    args = ["train", "fsb", "--data", str(tiny_dataset), "--data", str(second), "--out", str(out), "--crop", "32",
            "--batch-size", "2", "--channels", "8", "--workers", "2", "--steps", "3", "--export", str(exp), "-q", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    from focusstack.training.tr_data import list_tr_samples

    assert summary["steps"] == 3 and summary["train_samples"] == 2 * len(list_tr_samples(tiny_dataset, "train"))
    assert summary["data"] == [str(tiny_dataset), str(second)] and summary["device"] == "cpu"
    assert np.isfinite(summary["last"]["loss"]) and load_fsb(exp).metadata["trained_steps"] == "3"


def _draw_ints(rng):  # top level: worker processes unpickle it
    return (torch.tensor(rng.integers(0, 1 << 30, 4)),)


def test_batch_stream_workers_are_seeded_and_differ_from_each_other():
    from focusstack.training.tr_loop import LoopConfig, batch_stream

    cfg = LoopConfig(out=Path("."), steps=1, lr=1e-3, workers=2, seed=5)
    a = [next(it)[0].tolist() for it in [batch_stream(_draw_ints, None, cfg, 0, pin=False)] for _ in range(4)]
    b = [next(it)[0].tolist() for it in [batch_stream(_draw_ints, None, cfg, 0, pin=False)] for _ in range(4)]
    assert a == b  # same seed, step and worker count: the same batches
    assert len({tuple(x) for x in a}) == 4  # the two workers draw from different streams
    c = [next(it)[0].tolist() for it in [batch_stream(_draw_ints, None, cfg, 7, pin=False)] for _ in range(2)]
    assert c[0] != a[0]  # a resumed run (another step) does not replay the first batches


@pytest.mark.parametrize("option, needle, fix", [
    (["--device", "gpu"], "Invalid value", "'gpu'"),  # Typer's choice error (issue 18)
    (["--device", "cuda"], "no CUDA device", "--device cpu"),
    (["--workers", "-1"], "integer >= 0", "--workers 0"),
])
def test_train_device_and_worker_errors(tiny_dataset, tmp_path, option, needle, fix):
    if option[-1] == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = runner.invoke(app, ["train", "keb", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--steps", "1"] + option)
    assert r.exit_code == 2 and needle in r.output and fix in r.output
    assert not (tmp_path / "r" / "checkpoint").exists()


# ---- trained weights (focusstack/models/fsb and keb; skipped when absent) -----------------


def _need(kind: str) -> Path:
    from focusstack.config import models_dir

    d = models_dir() / kind  # shipped inside the package (focusstack/models)
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"no trained weights in {d}")
    return d


def test_trained_keb_estimates_gaussian_sigma():
    from conftest import shared_path

    from focusstack.refinement.features import keb_input
    from focusstack.training.tr_data import _read

    model = load_keb(_need("keb")).model
    # a background photo of the render's validation split (never seen in training)
    img = _read(shared_path("data", "backgrounds", "bsds68", "original", "143090.jpg"))[:128, :128].copy()
    errs = []
    for sigma in (1.0, 2.0, 4.0):
        blurred = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        x = torch.from_numpy(keb_input(img, blurred, np.ones(img.shape[:2], np.float32), model.cfg.bank))[None]
        with torch.inference_mode():
            errs.append(abs(float(model(x)[0]) - sigma) / sigma)
    assert np.mean(errs) < 0.2, errs  # measured 0.03 (sigma 1.0, 2.05, 3.66)


def test_trained_fsb_segments_a_synthetic_pair():
    model = load_fsb(_need("fsb")).model
    from test_refine import _scene

    from focusstack.refinement.refine import fsb_mask

    near, far, _, mask = _scene(size=160, sigma=3.0)
    p = fsb_mask(model, near, far, 512) > 0.5
    g = mask > 0.5
    miou = 0.5 * ((p & g).sum() / (p | g).sum() + (~p & ~g).sum() / (~p | ~g).sum())
    assert miou > 0.8, miou


@pytest.mark.parametrize("kind", ["fsb", "keb"])
def test_train_init_warm_starts_from_an_exported_model(tiny_dataset, tmp_path, kind):
    """--init DIR: the run starts from the folder's weights and architecture; exports count
    trained_steps on from the folder's; a conflicting --channels is refused, naming the fix."""
    from safetensors.torch import load_file

    from focusstack.training.tr_loop import warm_start

    load = load_fsb if kind == "fsb" else load_keb
    base = ["train", kind, "--data", str(tiny_dataset), "--crop", "32", "--batch-size", "2", "-q", "--json"]
    first = tmp_path / "first"
    r = runner.invoke(app, base + ["--out", str(tmp_path / "r1"), "--channels", "8", "--steps", "2", "--export", str(first)])
    assert r.exit_code == 0, r.output
    model, steps = warm_start(first, load, {"channels": None})
    saved = load_file(str(first / "model.safetensors"))
    assert steps == 2 and model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    second = tmp_path / "second"
    r = runner.invoke(app, base + ["--out", str(tmp_path / "r2"), "--init", str(first), "--steps", "3", "--export", str(second)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["init"] == {"from": str(first), "trained_steps": 2} and summary["steps"] == 3
    assert load(second).metadata["trained_steps"] == "5"
    assert json.loads((second / "config.json").read_text())["channels"] == 8  # the folder's width, not the default
    after = load_file(str(second / "model.safetensors"))
    assert any(not torch.equal(after[k], saved[k]) for k in saved)  # it trained
    r = runner.invoke(app, base + ["--out", str(tmp_path / "r3"), "--init", str(first), "--channels", "16", "--steps", "1"])
    assert r.exit_code != 0 and "--init" in r.output and "drop --channels" in r.output
