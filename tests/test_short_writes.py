"""Every writer on a nearly full disk (a small tmpfs; skipped where mount is not permitted):
either the complete file is there, or the old file is untouched, and no temp file is left.

Issue 19, "widen the net": TIFF, PNG 8/16, JPEG, CSV, JSON, masks (several outputs at once),
with and without --overwrite, through the library and through the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.errors import FileWriteError, ImageWriteError
from focusstack.io import read_image, write_files, write_image, write_images

FREE = 8 * 1024  # bytes left free on the disk; every output below needs more
runner = CliRunner()


@pytest.fixture()
def full_disk(tmp_path):
    """A 512 KiB tmpfs, an old small file in it, then filled up to FREE bytes free."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mnt = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({r.stderr.decode().strip()[:80]})")
    try:
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        with open(mnt / "filler", "wb") as fh:
            fh.write(b"\0" * max(free - FREE, 0))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _noise(h=96, w=96, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _old_file(folder: Path, name: str) -> bytes:
    """A small complete image written before the disk fills (so that --overwrite has a victim)."""
    path = folder / name
    if path.suffix == ".csv":
        path.write_bytes(b"old,csv\n")
    else:
        Image.fromarray(np.full((2, 2, 3), 7, np.uint8)).save(path)
    return path.read_bytes()


def _fill(folder: Path) -> None:
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > FREE:
        with open(folder / f"filler{uuid.uuid4().hex[:4]}", "wb") as fh:
            fh.write(b"\0" * (free - FREE))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


CASES = [("out.tif", 16), ("out.png", 8), ("out.png", 16), ("out.jpg", 8)]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(("name", "bit_depth"), CASES)
def test_image_writer_on_a_full_disk(full_disk, name, bit_depth, overwrite):
    before = None
    if overwrite:
        os.unlink(full_disk / "filler")
        before = _old_file(full_disk, name)
        _fill(full_disk)
    with pytest.raises(ImageWriteError, match="disk space"):
        write_image(full_disk / name, _noise(), bit_depth=bit_depth, overwrite=overwrite)
    if overwrite:
        assert (full_disk / name).read_bytes() == before
    else:
        assert not (full_disk / name).exists()
    assert _leftovers(full_disk) == []


@pytest.mark.parametrize(("name", "bit_depth"), CASES)
def test_image_writer_that_fits_is_complete(full_disk, name, bit_depth):
    px = _noise(8, 8)
    write_image(full_disk / name, px, bit_depth=bit_depth)
    back = read_image(full_disk / name).pixels
    tol = 0.08 if name.endswith(".jpg") else 1 / (2 ** bit_depth - 1)
    np.testing.assert_allclose(back, px, atol=tol)
    assert _leftovers(full_disk) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_csv_and_json_on_a_full_disk(full_disk, overwrite):
    before = None
    if overwrite:
        os.unlink(full_disk / "filler")
        before = _old_file(full_disk, "scores.csv")
        _fill(full_disk)
    text = "".join(f"m,{i},pred/{i}.png,{i / 7!r}\n" for i in range(2000)).encode()
    with pytest.raises(FileWriteError, match="disk space"):
        write_files([(full_disk / "scores.csv", text)], overwrite=overwrite, error_class=FileWriteError)
    assert (full_disk / "scores.csv").read_bytes() == before if overwrite else not (full_disk / "scores.csv").exists()
    assert _leftovers(full_disk) == []


def test_dataset_json_on_a_full_disk(full_disk):
    from focusstack.rendering.dataset import _atomic_write

    with pytest.raises(FileWriteError, match="disk is full") as info:
        _atomic_write(full_disk / "manifest.json", b"{" + b" " * 40000 + b"}")
    assert "fix:" in str(info.value)
    assert not (full_disk / "manifest.json").exists() and _leftovers(full_disk) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_masks_with_their_image_all_or_none(full_disk, overwrite):
    """An output and its masks (refine-tr, --save-steps): the small mask fits, the image does
    not; neither is written (or both old ones are kept)."""
    names = ["mask.png", "out.png"]
    before = {}
    if overwrite:
        os.unlink(full_disk / "filler")
        before = {n: _old_file(full_disk, n) for n in names}
        _fill(full_disk)
    mask = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(ImageWriteError, match="disk space"):
        write_images([(full_disk / "mask.png", mask, 8, None, None), (full_disk / "out.png", _noise(), 16, None, None)],
                     overwrite=overwrite)
    for n in names:
        assert (full_disk / n).read_bytes() == before[n] if overwrite else not (full_disk / n).exists()
    assert _leftovers(full_disk) == []


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_fuse_cli_on_a_full_disk_keeps_the_old_file(full_disk, tmp_path, ext):
    s = tmp_path / "s"
    s.mkdir()
    for k in range(2):
        Image.fromarray(np.rint(_noise(96, 96, seed=k) * 255).astype(np.uint8)).save(s / f"f{k}.png")
    os.unlink(full_disk / "filler")
    before = _old_file(full_disk, f"y.{ext}")
    _fill(full_disk)
    r = runner.invoke(app, ["fuse", str(s), "-o", str(full_disk / f"y.{ext}"), "--overwrite", "-q", "--no-align",
                            "--engine", "decision"])
    assert r.exit_code == 1, r.output
    assert "disk space" in r.output and "wrote" not in r.output
    assert (full_disk / f"y.{ext}").read_bytes() == before
    assert _leftovers(full_disk) == []
