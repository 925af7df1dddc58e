"""The reliability matrix at the command line: each case asserts the exit code, the message and
that no output (or temporary file) is left behind. Networks are a seeded random stand-in, swapped
in for build_engine: these tests are about the pipeline's behaviour, not image quality."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from typer.testing import CliRunner

from focusstack.jobs import batch as batch_job
from focusstack.jobs import fuse as fuse_job
from focusstack.backends.torch_backend import TorchBackend
from focusstack.cli.app import app
from focusstack.config import TileConfig
from focusstack.engines.vaeedof import VAEEDOFEngine
from focusstack.errors import ImageWriteError
from focusstack.io import read_image, write_image
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig
from focusstack.networks.weights import save_model_dir

from conftest import REPO, shared_path

runner = CliRunner()


@pytest.fixture()
def fake_engine(vae, monkeypatch):
    torch.manual_seed(0)
    net = FusionUNet(FusionUNetConfig(channels=(32, 64, 64), attention_heads=2))
    engine = VAEEDOFEngine(TorchBackend(vae, net, device="cpu", precision="fp32"), TileConfig(tile=128))
    monkeypatch.setattr(fuse_job, "build_engine", lambda config: engine)
    monkeypatch.setattr(batch_job, "build_engine", lambda config: engine)
    return engine


def _rgb(path, size=(64, 80), seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    a = (rng.random((*size, 4 if mode == "RGBA" else 3)) * 255).astype(np.uint8)
    Image.fromarray(a, mode).save(path)


def _two_frames(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    _rgb(s / "a.png")
    _rgb(s / "b.png", seed=1)
    return s


def _no_leftovers(folder, name):
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def _fuse(*args):
    # the frames are independent random images: alignment (on by default) would rightly refuse them
    return runner.invoke(app, ["fuse", *map(str, args), "-q", "--no-align"])


# ---- folder and frame cases ---------------------------------------------------------------------


def test_empty_folder(tmp_path):
    (tmp_path / "s").mkdir()
    r = _fuse(tmp_path / "s", "-o", tmp_path / "o.png")
    assert r.exit_code == 2 and "s" in r.output and "fix:" in r.output
    _no_leftovers(tmp_path, "o.png")


def test_unknown_extension(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    _rgb(s / "a.png")
    (s / "b.xyz").write_text("?")
    r = _fuse(s / "a.png", s / "b.xyz", "-o", tmp_path / "o.png")
    assert r.exit_code == 2 and "b.xyz" in r.output and ".png" in r.output


@pytest.mark.parametrize("kind", ["jpg", "tif", "dng"])
def test_truncated_files(tmp_path, kind, fake_engine):
    s = tmp_path / "s"
    s.mkdir()
    if kind == "dng":
        src = shared_path("data", "raw", "Blackmagic.dng").read_bytes()
        (s / "a.dng").write_bytes(src[: 64 * 1024])
        (s / "b.dng").write_bytes(src)
        bad = "a.dng"
    else:
        _rgb(s / f"a.{kind}", seed=1)
        _rgb(s / f"b.{kind}", seed=2)
        data = (s / f"a.{kind}").read_bytes()
        (s / f"a.{kind}").write_bytes(data[: len(data) // 2])
        bad = f"a.{kind}"
    r = _fuse(s, "-o", tmp_path / "o.tif")
    assert r.exit_code == 1, r.output
    assert bad in r.output and "Traceback" not in r.output
    _no_leftovers(tmp_path, "o.tif")


def test_text_file_named_png(tmp_path, fake_engine):
    s = tmp_path / "s"
    s.mkdir()
    _rgb(s / "a.png")
    (s / "b.png").write_text("hello")
    r = _fuse(s, "-o", tmp_path / "o.png")
    assert r.exit_code == 1 and "b.png" in r.output
    _no_leftovers(tmp_path, "o.png")


def test_image_bomb_is_refused_fast(tmp_path):
    s = tmp_path / "s"
    s.mkdir()

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    (s / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    (s / "b.png").write_bytes((s / "a.png").read_bytes())
    t = time.perf_counter()
    r = _fuse(s, "-o", tmp_path / "o.png")
    assert time.perf_counter() - t < 1.0
    assert r.exit_code == 1 and "a.png" in r.output and "--max-pixels" in r.output


# ---- content cases (converted, and fused) -----------------------------------------------------


def test_rgba_among_rgb_gray_among_rgb_and_8_with_16_bit(tmp_path, fake_engine):
    s = tmp_path / "s"
    s.mkdir()
    _rgb(s / "a.png")
    _rgb(s / "b.png", seed=1, mode="RGBA")
    Image.fromarray((np.random.default_rng(2).random((64, 80)) * 255).astype(np.uint8), "L").save(s / "c.png")
    tifffile.imwrite(s / "d.tif", (np.random.default_rng(3).random((64, 80, 3)) * 65535).astype(np.uint16))
    r = _fuse(s, "-o", tmp_path / "o.tif")
    assert r.exit_code == 0, r.output
    out = tifffile.imread(tmp_path / "o.tif")
    assert out.dtype == np.uint16 and out.shape == (64, 80, 3)  # 16-bit because one input is


def test_nan_float_tiff(tmp_path, fake_engine):
    s = tmp_path / "s"
    s.mkdir()
    a = np.random.default_rng(0).random((64, 80, 3)).astype(np.float32)
    tifffile.imwrite(s / "a.tif", a, photometric="rgb")
    a[3, 4, 1] = np.nan
    tifffile.imwrite(s / "b.tif", a, photometric="rgb")
    r = _fuse(s, "-o", tmp_path / "o.tif")
    assert r.exit_code == 1 and "b.tif" in r.output and "NaN" in r.output
    _no_leftovers(tmp_path, "o.tif")


# ---- output cases ---------------------------------------------------------------------------


def test_output_folder_missing_is_created(tmp_path):
    """fuse creates a missing output folder (fuse_job._make_folders) and writes a complete file."""
    s = _two_frames(tmp_path)
    r = _fuse(s, "-o", tmp_path / "nope" / "o.png")
    assert r.exit_code == 0, r.output
    assert read_image(tmp_path / "nope" / "o.png").pixels.shape == (64, 80, 3)
    _no_leftovers(tmp_path / "nope", "never-written.png")


def test_write_image_into_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist") as info:
        write_image(tmp_path / "nope" / "o.png", np.zeros((2, 2, 3), np.float32), bit_depth=8)
    assert "mkdir" in str(info.value)


def test_output_folder_not_writable(tmp_path, monkeypatch):
    s = _two_frames(tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    r = _fuse(s, "-o", tmp_path / "ro" / "o.png")
    assert r.exit_code == 1 and "not writable" in r.output
    _no_leftovers(tmp_path / "ro", "o.png")


def test_full_disk_leaves_nothing(tmp_path, fake_engine, monkeypatch):
    import errno

    from focusstack.io import writers

    s = _two_frames(tmp_path)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.os, "fsync", full)
    r = _fuse(s, "-o", tmp_path / "o.png")
    monkeypatch.setattr(writers.os, "fsync", real_fsync)
    assert r.exit_code == 1 and "space" in r.output.lower()
    _no_leftovers(tmp_path, "o.png")


def test_output_equal_to_input_is_refused(tmp_path):
    s = _two_frames(tmp_path)
    before = (s / "a.png").read_bytes()
    r = _fuse(s / "a.png", s / "b.png", "-o", s / "a.png", "--overwrite")
    assert r.exit_code == 2 and "input" in r.output
    assert (s / "a.png").read_bytes() == before


def test_batch_no_resume_refuses_when_outputs_exist(tmp_path, fake_engine):
    root = tmp_path / "root"
    for name in ("x", "y"):
        (root / name).mkdir(parents=True)
        _rgb(root / name / "a.png")
        _rgb(root / name / "b.png", seed=1)
    out = tmp_path / "out"
    assert _fuse("--batch", root, "-o", out, "--ext", "png").exit_code == 0
    r = _fuse("--batch", root, "-o", out, "--ext", "png", "--no-resume")
    assert r.exit_code == 2 and "--overwrite" in r.output


# ---- interrupts ---------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _default_sigint() -> None:
    # a shell that starts the test suite in the background makes its children ignore SIGINT,
    # and Python then installs no KeyboardInterrupt handler: give the child a normal Ctrl-C
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc to follow the child")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_run_leaves_no_file(tmp_path, vae_dir, sig):
    s = tmp_path / "s"
    s.mkdir()
    for i in range(3):
        _rgb(s / f"f{i}.png", size=(1536, 1536), seed=i)
    torch.manual_seed(0)
    net = FusionUNet(FusionUNetConfig(channels=(32, 64, 64), attention_heads=2))
    # test-only weights: marked trained so that fuse starts; the output is never looked at
    save_model_dir(net, net.cfg.to_dict(), tmp_path / "w", metadata={"trained_steps": 1})
    out = tmp_path / "o.png"
    env = os.environ | {"FOCUSSTACK_VAE_DIR": str(vae_dir), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "focusstack", "fuse", str(s), "-o", str(out), "--fusion-weights", str(tmp_path / "w"), "--tile", "128", "--precision", "fp32", "--no-align", "--engine", "vaeedof"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )
    # interrupt once the child has done real work: start-up (imports, weights, decoding) takes
    # about 3 s of CPU; the whole job (~600 patches) takes over a minute
    deadline = time.monotonic() + 120
    while proc.poll() is None and _cpu_seconds(proc.pid) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the job ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    _no_leftovers(tmp_path, "o.png")
