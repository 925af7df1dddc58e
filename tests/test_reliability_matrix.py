"""Issue 19's numbered cases, one test (or a few) each, so that none can come back.

Each test failed on the code before the fix (the reason is in its docstring) and passes now.
Cases fixed earlier (1: full-disk JPEG, 13: long names, 14: --device cuda with decision) are
tested in test_fast_default.py and test_io.py; cases 9, 10, 12 belong to the batch/options work.
The engine is the decision engine (no torch, no weights): these tests are about the pipeline's
behaviour, not image quality.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

import focusstack.errors as errors
import focusstack.io as fio
from focusstack.cli.app import app
from focusstack.errors import ImageReadError, ImageWriteError, UsageError, WeightsError, classify
from focusstack.io import check_stack, collect_stack, read_image
from focusstack.io import writers as io_writers

runner = CliRunner()


def _scene(size=(48, 64), seed=0) -> np.ndarray:
    """A smooth random RGB scene, ``(H, W, 3) uint8``."""
    rng = np.random.default_rng(seed)
    small = rng.random((size[0] // 8 + 1, size[1] // 8 + 1, 3))
    up = np.kron(small, np.ones((8, 8, 1)))[: size[0], : size[1]]
    return np.rint(up * 255).astype(np.uint8)


def _stack(folder: Path, n=3, size=(48, 64), ext="png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        p = folder / f"f{k}.{ext}"
        Image.fromarray(_scene(size, seed=k)).save(p)
        paths.append(p)
    return paths


def _fuse(*args):
    return runner.invoke(app, ["fuse", *map(str, args), "-q", "--no-align", "--engine", "decision"])


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*") if p.name.endswith((".part", ".old", ".tmp"))]


# ---- 2: eval never writes over an input --------------------------------------------------------


@pytest.mark.parametrize("target", ["gt", "pred"])
def test_02_eval_csv_never_overwrites_an_input(tmp_path, target):
    """Old: ``eval --csv GT/a.png --overwrite`` checked only that the CSV could be replaced."""
    for d in ("pred", "gt"):
        (tmp_path / d).mkdir()
        Image.fromarray(_scene(seed=3)).save(tmp_path / d / "a.png")
    victim = tmp_path / target / "a.png"
    before = victim.read_bytes()
    r = runner.invoke(app, ["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "mse",
                            "--csv", str(victim), "--overwrite", "-q"])
    assert r.exit_code == 2, r.output
    assert "one of the inputs" in r.output and "fix:" in r.output
    assert victim.read_bytes() == before
    _no_temp_files(tmp_path)


def test_02_eval_plots_folder_is_not_an_input_folder(tmp_path):
    """Old: ``--plots PRED_DIR`` wrote difficulty_*.png among the predictions (read as a
    prediction by the next run)."""
    from focusstack.jobs.eval import EvalConfig, _check_outputs

    (tmp_path / "pred").mkdir()
    config = EvalConfig(methods=(("p", tmp_path / "pred"),), gt=tmp_path / "pred", plots=tmp_path / "pred")
    with pytest.raises(UsageError, match="--plots"):
        _check_outputs(config, ["psnr"], [])
    assert list((tmp_path / "pred").iterdir()) == []


# ---- 3: frames are never dropped without a word -------------------------------------------------


def test_03_dangling_link_is_an_error(tmp_path):
    """Old: the dangling link was skipped and a 3-frame stack was fused from 2 (exit 0)."""
    s = tmp_path / "s"
    _stack(s, 2)
    (s / "f2.png").symlink_to(tmp_path / "gone.png")
    r = _fuse(s, "-o", tmp_path / "o.png")
    assert r.exit_code == 1, r.output
    assert "f2.png" in r.output and "dangling" in r.output and "fix:" in r.output
    assert not (tmp_path / "o.png").exists()


def test_03_link_loop_is_an_error(tmp_path):
    s = tmp_path / "s"
    _stack(s, 2)
    (s / "f2.png").symlink_to(s / "f3.png")
    (s / "f3.png").symlink_to(s / "f2.png")
    with pytest.raises(ImageReadError, match="loop"):
        collect_stack([s])


def test_03_what_was_not_read_is_logged(tmp_path, caplog):
    s = tmp_path / "s"
    _stack(s, 2)
    (s / "notes.txt").write_text("x")
    (s / "sub").mkdir()
    (s / ".hidden.png").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="focusstack.io"):
        assert [p.name for p in collect_stack([s])] == ["f0.png", "f1.png"]
    text = caplog.text
    assert "notes.txt (not an image type)" in text and "sub (not a file" in text and ".hidden.png (hidden)" in text


# ---- 4: outputs are not read back as inputs -----------------------------------------------------


def test_04_output_inside_the_input_folder_is_excluded(tmp_path, caplog):
    """Old: collect_stack had no way to leave the output out; the fused image became a frame
    of the next run (and a size error blamed a genuine frame)."""
    s = tmp_path / "s"
    _stack(s, 3)
    out = s / "fused.png"
    Image.fromarray(_scene((20, 20), seed=9)).save(out)  # last run's output, of another size
    with caplog.at_level(logging.WARNING, logger="focusstack.io"):
        frames = collect_stack([s], exclude=[s / ".." / "s" / "fused.png"])
    assert [p.name for p in frames] == ["f0.png", "f1.png", "f2.png"]
    assert "fused.png: not read as a frame: it is this run's output" in caplog.text
    check_stack(frames)  # no size error


def test_04_our_temp_files_are_never_frames(tmp_path):
    s = tmp_path / "s"
    _stack(s, 2)
    (s / ".fused.png.0123abcd.part").write_bytes((s / "f0.png").read_bytes())
    assert [p.name for p in collect_stack([s])] == ["f0.png", "f1.png"]


# ---- 5: a mixed dataset is refused --------------------------------------------------------------


def _tiny_render_config(**kw):
    from focusstack.rendering.config import RenderConfig

    base = dict(samples=1, resolution=64, frames_min=2, frames_max=3, show_progress=False, val_fraction=0.0)
    return RenderConfig(**(base | kw))


@pytest.mark.parametrize("content", ["{not json", '{"format": "focusstack-render/1"}', "[]"])
def test_05_damaged_manifest_stops_the_run(tmp_path, content):
    """Old: a manifest that did not parse was ignored, samples of two configurations were mixed
    and the new manifest claimed one configuration for all."""
    from focusstack.rendering import render_dataset

    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(UsageError, match="damaged") as info:
        render_dataset(tmp_path, _tiny_render_config())
    assert "fix:" in str(info.value)
    assert not (tmp_path / "samples").exists()
    assert (tmp_path / "manifest.json").read_text() == content


def test_05_sample_of_other_options_stops_the_run(tmp_path):
    """Without a manifest, a finished sample of another resolution is no longer taken as one of
    this run's samples."""
    from focusstack.rendering import render_dataset

    sdir = tmp_path / "samples" / "000000"
    sdir.mkdir(parents=True)
    meta = {"id": "000000", "index": 0, "split": "train", "n_frames": 4, "planes": [], "seed": 0,
            "engine": "thinlens", "camera": {"resolution_px": 256}}
    (sdir / "meta.json").write_text(json.dumps(meta))
    cfg = _tiny_render_config()
    meta["engine"] = cfg.engine
    meta["seed"] = cfg.seed
    (sdir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="other options") as info:
        render_dataset(tmp_path, cfg)
    assert "resolution 256" in str(info.value) and "64" in str(info.value)
    assert not (tmp_path / "manifest.json").exists()


# ---- 6, 7: warnings for gray frames and clipped HDR floats --------------------------------------


def test_06_gray_frame_among_colour_frames_warns(tmp_path, caplog):
    """Old: accepted with no word; its sharp regions came out gray."""
    s = tmp_path / "s"
    _stack(s, 2)
    Image.fromarray(_scene(seed=5)[..., 0]).save(s / "f2.png")  # mode L
    with caplog.at_level(logging.WARNING, logger="focusstack.io"):
        check_stack(collect_stack([s]))
    assert "grayscale" in caplog.text and "f2.png" in caplog.text and "fix:" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="focusstack.io"):
        check_stack(collect_stack([s / "f0.png", s / "f1.png"]))  # colour only: no warning
    assert "grayscale" not in caplog.text


def test_07_bright_float_tiff_warns_and_clips(tmp_path, caplog):
    """Old: values above 1 were clipped silently."""
    values = np.full((8, 8, 3), 0.5, np.float32)
    values[:2, :2] = 3.0
    tifffile.imwrite(tmp_path / "hdr.tif", values, photometric="rgb")
    with caplog.at_level(logging.WARNING, logger="focusstack.io"):
        frame = read_image(tmp_path / "hdr.tif")
    assert frame.pixels.max() == 1.0
    assert "12 of 192 samples are above 1 (max 3)" in caplog.text and "clipped" in caplog.text
    caplog.clear()
    tifffile.imwrite(tmp_path / "ldr.tif", np.full((8, 8, 3), 0.5, np.float32), photometric="rgb")
    with caplog.at_level(logging.WARNING, logger="focusstack.io"):
        read_image(tmp_path / "ldr.tif")
    assert caplog.text == ""


# ---- 8: refine-tr writes all outputs or none ----------------------------------------------------


def _fail_on_call(monkeypatch, n: int):
    real = io_writers.write_bytes_checked
    calls = {"n": 0}

    def flaky(tmp, data):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tmp, data)

    monkeypatch.setattr(io_writers, "write_bytes_checked", flaky)
    return calls


def test_08_refine_tr_outputs_all_or_none(tmp_path, monkeypatch):
    """Old: the disk filling before the third output left the first two (and the rerun then
    stopped at "output exists")."""
    a, b = _stack(tmp_path / "in", 2, size=(64, 64))
    outs = [tmp_path / "o.png", tmp_path / "mask.png", tmp_path / "diff.png"]
    calls = _fail_on_call(monkeypatch, 3)
    r = runner.invoke(app, ["refine-tr", str(a), str(b), "-o", str(outs[0]), "--save-mask", str(outs[1]),
                            "--save-diffusion", str(outs[2]), "-q"])
    assert calls["n"] == 3
    assert r.exit_code == 1, r.output
    assert "disk space" in r.output
    assert not any(p.exists() for p in outs)
    _no_temp_files(tmp_path)
    monkeypatch.undo()
    r = runner.invoke(app, ["refine-tr", str(a), str(b), "-o", str(outs[0]), "--save-mask", str(outs[1]),
                            "--save-diffusion", str(outs[2]), "-q"])
    assert r.exit_code == 0, r.output
    assert all(read_image(p).pixels.shape == (64, 64, 3) for p in outs)


def test_08_failed_rename_rolls_back_replaced_files(tmp_path, monkeypatch):
    """The renames themselves: when the second fails, the first output is restored."""
    old = [tmp_path / "a.png", tmp_path / "b.png"]
    for k, p in enumerate(old):
        Image.fromarray(_scene(seed=k)).save(p)
    before = [p.read_bytes() for p in old]
    real = os.replace
    seen = {"n": 0}

    def flaky(src, dst):
        if str(src).endswith(".part"):
            seen["n"] += 1
            if seen["n"] == 2:
                raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(io_writers.os, "replace", flaky)
    px = np.full((4, 4, 3), 0.25, np.float32)
    with pytest.raises(ImageWriteError):
        fio.write_images([(old[0], px, 8, None, None), (old[1], px, 8, None, None)], overwrite=True)
    monkeypatch.undo()
    assert [p.read_bytes() for p in old] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


# ---- 11: garbage safetensors with matching sums -------------------------------------------------


def test_11_garbage_safetensors_is_a_weights_problem(tmp_path):
    """Old: SafetensorError 'header too large' escaped as an internal error."""
    from focusstack.networks.weights import load_fusion, sha256_file

    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "SHA256SUMS").write_text(
        "".join(f"{sha256_file(tmp_path / n)}  {n}\n" for n in ("model.safetensors", "config.json"))
    )
    with pytest.raises(WeightsError, match="model.safetensors") as info:
        load_fusion(tmp_path)
    assert classify(info.value).exit_code == 1 and "fix:" in str(info.value)


def test_11_damaged_sums_line_is_a_weights_problem(tmp_path):
    from focusstack.networks.weights import verify_sums

    (tmp_path / "SHA256SUMS").write_text("garbage\n")
    with pytest.raises(WeightsError, match="damaged line"):
        verify_sums(tmp_path)


# ---- 15: wording ---------------------------------------------------------------------------------


def test_15_no_expected_none(tmp_path):
    """Old: 'expected None, got 0' for refine-tr --work-size 0."""
    a, b = _stack(tmp_path / "in", 2)
    r = runner.invoke(app, ["refine-tr", str(a), str(b), "-o", str(tmp_path / "o.png"), "--work-size", "0"])
    assert r.exit_code == 2
    assert "None" not in r.output and "expected an integer >= 64, got 0" in r.output and "fix:" in r.output
    assert str(UsageError("x", actual="3")) == "x\ngot 3"


def test_15_labels_name_the_kind():
    from focusstack.jobs.eval import EvalInputError

    assert classify(EvalInputError("x")).label == "inputs do not pair"
    assert classify(errors.FileWriteError("x")).label == "cannot write file"


def test_15_csv_write_error_is_not_called_an_image(tmp_path):
    (tmp_path / "ro").mkdir()
    with pytest.raises(errors.FileWriteError) as info:
        fio.write_files([(tmp_path / "missing" / "x.csv", b"a,b\n")], error_class=errors.FileWriteError)
    assert classify(info.value).label == "cannot write file"


def test_15_no_decoder_message_reaches_stderr(tmp_path):
    """A TIFF tag of an unknown type makes tifffile log an error (printed on stderr by Python's
    last-resort handler); the frame itself is fine. Now the message goes to the debug log."""
    import struct

    tifffile.imwrite(tmp_path / "t.tif", _scene((8, 8)), photometric="rgb", extratags=[(65000, "H", 1, 7, True)])
    data = bytearray((tmp_path / "t.tif").read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack("<H", data[at:at + 2])[0] == 65000:
            data[at + 2:at + 4] = struct.pack("<H", 99)  # no such TIFF type
    (tmp_path / "t.tif").write_bytes(bytes(data))
    r = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import sys; from focusstack.io import read_image; print(read_image(sys.argv[1]).pixels.shape)",
         str(tmp_path / "t.tif")],
        capture_output=True, text=True, check=False,
    )
    assert r.returncode == 0 and r.stdout.strip() == "(8, 8, 3)", r.stderr
    assert r.stderr == ""


# ---- 16: EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6])
def test_16_rotated_frames_fuse(tmp_path, orientation):
    """Old: a frame stored sideways (orientation 6) gave a misleading size error; one stored
    upside down (3) was fused against upright frames."""
    s = tmp_path / "s"
    s.mkdir()
    upright = _scene((40, 56), seed=1)
    Image.fromarray(upright).save(s / "f0.png")
    stored = np.ascontiguousarray(np.rot90(upright, k=1) if orientation == 6 else upright[::-1, ::-1])
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(s / "f1.png", exif=exif.tobytes())
    r = _fuse(s, "-o", tmp_path / "o.png", "--json")
    assert r.exit_code == 0, r.output
    # the same scene twice: the fusion is that scene, upright
    fused = read_image(tmp_path / "o.png").pixels
    assert fused.shape == (40, 56, 3)
    np.testing.assert_allclose(fused, upright / 255.0, atol=1.5 / 255)


def test_15_interrupted_render_leaves_no_unfinished_sample(tmp_path, monkeypatch):
    """Old: Ctrl-C said "no partial output was left behind" while an unfinished sample folder
    (frames, no meta.json) remained. Now it is removed; finished samples stay."""
    from focusstack.rendering import dataset, render_dataset

    real = dataset._atomic_write
    calls = {"n": 0}

    def interrupted(path, data):
        calls["n"] += 1
        if calls["n"] == 3:  # the manifest, frame_00.png, then Ctrl-C
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(dataset, "_atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path, _tiny_render_config())
    assert calls["n"] == 3
    assert list((tmp_path / "samples").iterdir()) == []
    assert [p.name for p in tmp_path.rglob(".*")] == []


def test_04_fuse_twice_into_the_input_folder(tmp_path):
    """Old: the second run read the first run's fused.png as a 4th frame (and, had its size
    differed, blamed a genuine frame). Now it is left out, and the log says so."""
    s = tmp_path / "s"
    _stack(s, 3)
    out = s / "fused.png"
    assert _fuse(s, "-o", out).exit_code == 0
    r = runner.invoke(app, ["fuse", str(s), "-o", str(out), "--overwrite", "--no-align", "--engine", "decision", "--json"])
    assert r.exit_code == 0, r.output
    assert "fused.png: not read as a frame" in r.output
    doc = json.loads(r.stdout)
    assert doc["frames"] == 3 and "fused.png" not in doc["focus_order"]["files"]
    assert [p.name for p in collect_stack([s], exclude=[out])] == ["f0.png", "f1.png", "f2.png"]
