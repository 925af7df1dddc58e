"""The fast default (issues 16 and 17): ties are decisions, alignment never makes a registered
stack worse, the CLI starts without torch, and every written byte is checked."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from focusstack.jobs import fuse as fuse_job
from focusstack.cli.app import app
from focusstack.config import AlignConfig, FuseConfig
from focusstack.maps.decision import decision_steps, focus_evidence
from focusstack.errors import ImageWriteError
from focusstack.io import read_image, write_image
from focusstack.io import writers as io_writers

from test_align import synthetic_stack, write_stack

runner = CliRunner()


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip((base - base.mean()) * 4 + 0.5, 0, 1).astype(np.float32)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Defocus as a camera makes it: a blur of linear light (local means of light are kept)."""
    lin = np.power(np.clip(img, 0, 1), 2.2)
    return np.power(cv2.GaussianBlur(lin, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101), 1 / 2.2).astype(np.float32)


def test_frames_tied_for_sharpest_never_hand_the_region_to_a_blurred_frame():
    # Left 3/4: frames 0 and 1 both sharp (a far background two focus planes see sharp), frame 2
    # blurred. Right 1/4: only frame 2 sharp. The old rule (evidence = margin over the second
    # best) called the tie undecided and filled it from frame 2's region.
    h, w = 128, 256
    sharp = _texture(h, w, 1)
    rng = np.random.default_rng(2)
    f0 = np.clip(sharp + rng.normal(0, 0.002, sharp.shape), 0, 1).astype(np.float32)
    f1 = np.clip(sharp + rng.normal(0, 0.002, sharp.shape), 0, 1).astype(np.float32)
    f2 = _blur(sharp, 4.0)
    right = slice(3 * w // 4, w)
    f2[:, right] = sharp[:, right]
    f0[:, right] = _blur(sharp, 4.0)[:, right]
    f1[:, right] = _blur(sharp, 3.0)[:, right]
    steps = decision_steps([f0, f1, f2])
    inner = steps.labels[8:-8, 8 : 3 * w // 4 - 16]
    assert (inner != 2).all(), f"{(inner == 2).mean():.1%} of the tied region went to the blurred frame"
    assert (steps.labels[8:-8, 3 * w // 4 + 16 : -8] == 2).all()
    err = np.abs(steps.fused - sharp)[8:-8, 8:-8].mean()
    assert err < 0.01


def test_evidence_is_the_spread_of_the_measures():
    m = np.array([[[1.0]], [[1.0]], [[0.2]]], np.float32)  # two tied, one far below
    assert focus_evidence(m)[0, 0] == pytest.approx(0.8)


def test_alignment_keeps_a_registered_defocused_stack_bit_exact(tmp_path):
    # registered frames with very different defocus: ECC drifts on them; the verification must
    # reject the drift, so aligned and --no-align outputs are the same pixels, uncropped
    h, w = 160, 224
    sharp = _texture(h, w, 3)
    near = sharp.copy()
    near[:, : w // 2] = _blur(sharp, 6.0)[:, : w // 2]
    far = sharp.copy()
    far[:, w // 2 :] = _blur(sharp, 6.0)[:, w // 2 :]
    mid = _blur(sharp, 2.0)
    folder = write_stack(tmp_path / "s", [near, mid, far], bits=16)
    a = fuse_job.fuse_stack([folder], tmp_path / "a.tif", FuseConfig(show_progress=False))
    b = fuse_job.fuse_stack([folder], tmp_path / "b.tif", FuseConfig(show_progress=False, align=AlignConfig(enabled=False)))
    assert (a.width, a.height) == (w, h)
    assert all(f["check"] is None or f["check"]["status"] != "aligned" for f in a.alignment["frames"])
    assert np.array_equal(read_image(tmp_path / "a.tif").pixels, read_image(tmp_path / "b.tif").pixels)


def test_alignment_still_corrects_a_real_shift(tmp_path):
    from test_align import similarity

    t = [similarity(1.0, 0.0, 0.0, 0.0, 200, 160), similarity(1.01, 0.2, 3.0, -2.0, 200, 160), similarity(1.02, 0.0, -2.0, 2.0, 200, 160)]
    frames, _ = synthetic_stack(160, 200, 3, t, seed=4)
    folder = write_stack(tmp_path / "s", frames)
    r = fuse_job.fuse_stack([folder], tmp_path / "o.tif", FuseConfig(show_progress=False))
    statuses = [f["check"]["status"] for f in r.alignment["frames"] if f["check"]]
    assert statuses and all(s == "aligned" for s in statuses)
    assert max(f["corner_shift_px"] for f in r.alignment["frames"]) > 1.0


def test_cli_help_and_the_decision_engine_never_import_torch(tmp_path):
    code = "import sys, focusstack.cli.app; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    frames, _ = synthetic_stack(96, 128, 3, None, seed=5)
    folder = write_stack(tmp_path / "s", frames, bits=8)
    out = tmp_path / "o.png"
    code = (
        "import sys; sys.argv = ['focusstack', 'fuse', sys.argv[1], '-o', sys.argv[2], '-q']\n"
        "from focusstack.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(folder), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.is_file()


def test_a_quiet_decision_fuse_imports_no_network_engine_and_no_rich_console(tmp_path):
    frames, _ = synthetic_stack(96, 128, 3, None, seed=5)
    folder = write_stack(tmp_path / "s", frames, bits=8)
    code = (
        "import sys; sys.argv = ['focusstack', 'fuse', sys.argv[1], '-o', sys.argv[2], '-q']\n"
        "from focusstack.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "extra = [m for m in ('rich.console', 'focusstack.engines.vaeedof', 'focusstack.tiling', 'focusstack.cli.bench')"
        " if m in sys.modules]\n"
        "assert not extra, f'imported {extra}'\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "o.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_decision_with_cuda_is_a_usage_error(tmp_path):
    frames, _ = synthetic_stack(64, 64, 2, None, seed=6)
    folder = write_stack(tmp_path / "s", frames, bits=8)
    r = runner.invoke(app, ["fuse", str(folder), "-o", str(tmp_path / "o.png"), "--device", "cuda"])
    assert r.exit_code == 2 and "decision" in r.output
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("name", ["o.jpg", "o.png", "o.tif"])
def test_a_short_write_is_an_error_and_keeps_the_old_file(tmp_path, monkeypatch, name):
    out = tmp_path / name
    out.write_bytes(b"the good old file")
    real_write = os.write

    def short(fd, data):  # noqa: ANN001
        if len(data) > 64:
            return real_write(fd, bytes(data[:64]))  # the disk took 64 bytes
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_writers.os, "write", short)
    img = _texture(64, 64, 7)
    with pytest.raises(ImageWriteError):
        write_image(out, img, bit_depth=8, overwrite=True)
    monkeypatch.undo()
    assert out.read_bytes() == b"the good old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_long_output_name_gets_a_short_temporary_name(tmp_path):
    name = "x" * 240 + ".png"
    write_image(tmp_path / name, _texture(16, 16, 8), bit_depth=8)
    assert (tmp_path / name).is_file()
