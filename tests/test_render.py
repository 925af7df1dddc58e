"""Tests of the synthetic dataset renderer (``focusstack render-dataset``), small and seeded."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from focusstack.errors import ConfigError, UsageError
from focusstack.rendering import RenderConfig, render_dataset
from focusstack.io.png16 import png_bytes as encode_png
from focusstack.rendering.sampling import build_pools, sample_scene
from focusstack.rendering.scene import Camera, Plane, Scene
from focusstack.rendering.sources import discover_subjects, sample_split, split_sources
from focusstack.rendering.thinlens import disc_kernel, render_scene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


# ------------------------------------------------------------------------------------------
# helpers


def read_png(path: Path) -> np.ndarray:
    """Decode a PNG written by focusstack (8/16-bit, any filter) without Pillow's 16-bit limits."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    bpp = channels * depth // 8
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * bpp)
    rows = raw[:, 1:].astype(np.int32)
    out = np.zeros_like(rows)
    for y in range(h):
        ftype, line = raw[y, 0], rows[y].copy()
        prev = out[y - 1] if y else np.zeros_like(line)
        if ftype == 1:
            line = (np.cumsum(line.reshape(w, bpp), axis=0) & 255).reshape(-1)
        elif ftype == 2:
            line = (line + prev) & 255
        else:
            assert ftype == 0
        out[y] = line
    arr = out.astype(np.uint8)
    if depth == 16:
        return arr.view(">u2").reshape(h, w, channels).astype(np.uint16).squeeze()
    return arr.reshape(h, w, channels).squeeze()


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def solid(h: int, w: int, rgb, alpha: float | None = None) -> np.ndarray:
    chans = list(rgb) + ([] if alpha is None else [alpha])
    return np.broadcast_to(np.asarray(chans, np.float32), (h, w, len(chans))).copy()


def black_background(dist: float = 10.0) -> Plane:
    return Plane("background", (0.0, 0.0, dist), (1.0, 1.0), solid(4, 4, (0, 0, 0)), fill_view=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def tiny_config(**kw) -> RenderConfig:
    base = dict(samples=2, resolution=64, seed=3, frames_min=2, frames_max=3, show_progress=False)
    base.update(kw)
    return RenderConfig(**base)


# ------------------------------------------------------------------------------------------
# optics


def test_disc_kernel_area_matches_diameter():
    for d in (4.0, 11.3, 30.0):
        k = disc_kernel(d)
        assert k.sum() == pytest.approx(1.0)
        eq_d = 2 * math.sqrt(k.sum() / k.max() / math.pi)
        assert eq_d == pytest.approx(d, rel=0.03)
    assert disc_kernel(0.8).shape == (3, 3) and disc_kernel(0.8)[1, 1] == pytest.approx(1.0)


def test_point_source_blur_diameter_matches_thin_lens():
    """A point at 2 m seen focused at 1 m spreads into a disc of the thin-lens CoC diameter."""
    f_mm, n, sensor, res = 100.0, 1.0, 36.0, 128
    cam = Camera(f_mm, n, sensor, res)
    z, s = 2.0, 1.0
    pitch = sensor / res
    expected = f_mm**2 / (n * (s * 1000 - f_mm)) * abs(z - s) / z / pitch  # 19.75 px
    assert expected == pytest.approx(19.753, rel=1e-3)
    px_m = z / cam.focal_px  # one pixel at 2 m, in metres
    point = Plane("point", (0.5 * px_m, 0.5 * px_m, z), (0.5 * px_m, 0.5 * px_m), solid(4, 4, (1, 1, 1), 1.0))
    scene = Scene(cam, [point, black_background()], [z, s])
    out = render_scene(scene)
    sharp, blurred = (srgb_to_linear(out.frames[k][..., 1].astype(np.float64)) for k in (0, 1))

    def variance(img: np.ndarray) -> float:
        yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
        m = img.sum()
        cy, cx = (img * yy).sum() / m, (img * xx).sum() / m
        return float((img * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / m / 2)  # per axis

    assert blurred.sum() == pytest.approx(sharp.sum(), rel=0.02)  # energy is conserved
    # a uniform disc of diameter d has a per-axis variance of d^2 / 16
    measured = 4 * math.sqrt(variance(blurred) - variance(sharp))
    assert measured == pytest.approx(expected, rel=0.05)
    # and its support, by area, agrees too
    area_d = 2 * math.sqrt((blurred > 0.5 * blurred.max()).sum() / math.pi)
    assert area_d == pytest.approx(expected, rel=0.05)
    assert out.coc_px[1, 0] == pytest.approx(expected, rel=1e-9)


def test_plane_at_focus_reproduces_texture():
    """Frames focused on a plane match the GT there (>= 45 dB) away from occluders and edges."""
    cfg = RenderConfig(resolution=192, seed=11, frames_min=4, frames_max=4, tilt_max_deg=0.0,
                       fstop_min=2.8, fstop_max=2.8)
    scene, _ = sample_scene(cfg, 0, build_pools(cfg))
    out = render_scene(scene)
    n_sub = len(scene.planes) - 1
    checked = 0
    for k in range(n_sub + 1):
        visible = out.masks[k].copy()
        if k < n_sub:
            visible &= out.mattes[k] >= 0.999
        for j in range(k):  # nearer planes blur over plane k: stay away by their CoC radius
            r = int(math.ceil(out.coc_px[k, j] / 2)) + 2
            near = torch.from_numpy((out.mattes[j] > 0).astype(np.float32))[None, None]
            grown = F.max_pool2d(near, 2 * r + 1, stride=1, padding=r)[0, 0].numpy() > 0
            visible &= ~grown
        if k < n_sub:  # own edge: the blurred background behind shows through soft alpha
            inner = torch.from_numpy((out.mattes[k] < 0.999).astype(np.float32))[None, None]
            visible &= ~(F.max_pool2d(inner, 5, stride=1, padding=2)[0, 0].numpy() > 0)
        if visible.sum() < 50:
            continue
        checked += 1
        assert psnr(out.frames[k][visible], out.gt[visible]) >= 45.0
        # and the other frames are visibly different there (blur happened)
        other = (k + 1) % (n_sub + 1)
        if out.coc_px[other, k] > 3:
            assert psnr(out.frames[other][visible], out.gt[visible]) < 40.0
    assert checked >= 2


def test_defocus_spread_of_foreground():
    """An out-of-focus foreground's blurred matte extends past its sharp matte, and its colour
    spreads over the in-focus background (premultiplied blur)."""
    cam = Camera(100.0, 2.0, 36.0, 128)
    z = 1.5
    half = 0.25 * 128 / cam.focal_px * z  # a square a quarter of the frame wide
    fg = Plane("fg", (0.0, 0.0, z), (half, half), solid(8, 8, (1, 0, 0), 1.0))
    bg = Plane("background", (0, 0, 10.0), (1, 1), solid(8, 8, (0, 1, 0)), fill_view=True)
    out = render_scene(Scene(cam, [fg, bg], [z, 10.0]), keep_blurred_alpha=True)
    sharp = out.mattes[0]
    blurred = out.blurred_alpha[1][0]  # frame focused on the background
    coc = out.coc_px[1, 0]
    assert coc > 8
    outside = sharp == 0
    # along the middle row, the blurred matte reaches about one CoC radius past the sharp edge
    row_sharp, row_blur = sharp[64], blurred[64]
    edge = int(np.nonzero(row_sharp > 0)[0].max())  # last covered column
    reach = int(np.nonzero(row_blur > 1e-3)[0].max())
    assert coc / 2 - 2 <= reach - edge <= coc / 2 + 2
    assert (blurred[outside] > 0.05).sum() > 4 * 64 * 0.5 * coc / 2  # a rim all around
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=0.02)
    red_outside = out.frames[1][..., 0][outside]
    assert red_outside.max() > 0.3 and out.gt[..., 0][outside].max() < 1e-3
    # focused on the foreground, the background does not spread over it
    assert np.abs(out.frames[0][sharp >= 0.999] - out.gt[sharp >= 0.999]).max() < 1e-6


def test_tilted_plane_gets_depth_varying_blur():
    cam = Camera(100.0, 0.5, 36.0, 128)
    z = 2.0
    half = 0.45 * 128 / cam.focal_px * z
    rng = np.random.default_rng(0)
    tex = np.dstack([rng.uniform(0, 1, (128, 128, 3)), np.ones((128, 128))]).astype(np.float32)
    p = Plane("tilted", (0, 0, z), (half, half), tex, tilt_y_deg=40.0)
    out = render_scene(Scene(cam, [p, black_background()], [z, 10.0]))
    z0, z1 = p.depth_range_m()
    assert z1 - z0 > 0.2
    cols = np.nonzero(out.mattes[0][64] >= 0.999)[0]
    a, b = int(cols.min()) + 4, int(cols.max()) - 4  # inside the plane, off its edges
    depth = out.depth[64, a:b]
    assert np.all(np.diff(depth) > 0) or np.all(np.diff(depth) < 0)  # depth varies across it
    lo, hi = out.coc_range_px[0, 0]
    assert lo == 0.0 and hi > 3.0  # in focus at its centre, blurred at its ends
    err = np.abs(out.frames[0] - out.gt)[32:96].mean(axis=(0, 2))
    mid = (a + b) // 2
    centre, ends = err[mid - 5 : mid + 5].mean(), np.r_[err[a : a + 8], err[b - 8 : b]].mean()
    assert ends > 3 * centre


# ------------------------------------------------------------------------------------------
# the dataset on disk


def sample_files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_dataset_layout_determinism_and_resume(tmp_path: Path):
    cfg = tiny_config(samples=3, val_fraction=0.5, resolution=96, frames_min=2, frames_max=4)
    a, b = tmp_path / "a", tmp_path / "b"
    summary = render_dataset(a, cfg)
    assert summary["rendered"] == 3 and summary["train"] + summary["val"] == 3
    render_dataset(b, cfg)
    files_a, files_b = sample_files(a), sample_files(b)
    assert files_a.keys() == files_b.keys()
    assert all(files_a[k] == files_b[k] for k in files_a), "same seed, different bytes"

    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["samples"]) == 3
    assert manifest["config"]["seed"] == 3
    for rec in manifest["samples"]:
        d = a / rec["path"]
        meta = json.loads((d / "meta.json").read_text())
        k = meta["n_frames"]
        assert 2 <= k <= 4 and rec["split"] == meta["split"] == sample_split(rec["index"], 0.5)
        for i in range(k):
            frame = read_png(d / f"frame_{i:02d}.png")
            assert frame.shape == (96, 96, 3) and frame.dtype == np.uint16
            mask = read_png(d / f"mask_{i:02d}.png")
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        masks = np.stack([read_png(d / f"mask_{i:02d}.png") for i in range(k)])
        assert np.all((masks == 255).sum(axis=0) == 1)  # exactly one sharpest frame per pixel
        assert read_png(d / "gt.png").shape == (96, 96, 3)
        for j in range(k - 1):
            assert read_png(d / f"matte_{j:02d}.png").shape == (96, 96)
        assert not (d / f"matte_{k - 1:02d}.png").exists()
        import tifffile

        depth = tifffile.imread(d / "depth.tiff")
        assert depth.dtype == np.float32 and depth.shape == (96, 96)
        assert 0.5 < depth.min() and depth.max() <= 10.0 + 1e-4
        dists = [p["distance_m"] for p in meta["planes"]]
        assert dists == sorted(dists) and meta["frame_order"] == "near_to_far"
        for i, fr in enumerate(meta["frames"]):
            assert fr["focus_distance_m"] == pytest.approx(dists[i])
            assert fr["coc_px"][i] == pytest.approx(0.0, abs=1e-9)
            assert fr["sigma_px"] == pytest.approx([c / 4 for c in fr["coc_px"]])
        assert set(meta["camera"]) >= {"focal_length_mm", "f_number", "sensor_width_mm", "resolution_px"}

    # resume: nothing is rendered again, files untouched
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    again = render_dataset(a, cfg)
    assert again["rendered"] == 0 and again["skipped"] == 3
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    # an unfinished sample (no meta.json) is rendered again, and only it, to the same bytes
    (a / "samples" / "000001" / "meta.json").unlink()
    (a / "samples" / "000001" / "gt.png").write_bytes(b"partial")
    again = render_dataset(a, cfg)
    assert again["rendered"] == 1
    assert sample_files(a) == files_b
    # more samples later: the first ones stay as they are
    more = render_dataset(a, tiny_config(samples=4, val_fraction=0.5, resolution=96, frames_min=2, frames_max=4))
    assert more["rendered"] == 1
    # other content options in the same folder: refused
    with pytest.raises(UsageError):
        render_dataset(a, tiny_config(samples=3, val_fraction=0.5, resolution=128, frames_min=2, frames_max=4))


def test_workers_give_the_same_bytes(tmp_path: Path):
    cfg = tiny_config(samples=2)
    render_dataset(tmp_path / "one", cfg)
    render_dataset(tmp_path / "two", tiny_config(samples=2, workers=2))
    a, b = sample_files(tmp_path / "one" / "samples"), sample_files(tmp_path / "two" / "samples")
    assert a == b


@pytest.mark.skipif(not (DATA / "subjects").is_dir(), reason="shared data not available")
def test_train_and_val_never_share_a_source(tmp_path: Path):
    cfg = tiny_config(samples=6, val_fraction=0.5, subjects=DATA / "subjects",
                      backgrounds=DATA / "backgrounds", frames_min=3, frames_max=3)
    summary = render_dataset(tmp_path, cfg)
    assert summary["train"] == 3 and summary["val"] == 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    used = {"train": set(), "val": set()}
    for rec in manifest["samples"]:
        used[rec["split"]].update(rec["sources"])
    assert used["train"] and used["val"]
    assert not used["train"] & used["val"]
    for kind in ("subjects", "backgrounds"):
        pools = manifest["sources"][kind]
        assert not set(pools["train"]) & set(pools["val"])
        assert len(pools["train"]) + len(pools["val"]) == {"subjects": 25, "backgrounds": 68}[kind]


def test_source_discovery(tmp_path: Path):
    from PIL import Image

    pair = tmp_path / "set"
    (pair / "original").mkdir(parents=True)
    (pair / "alpha").mkdir()
    (pair / "color").mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(pair / "original" / f"{stem}.jpg")
        Image.new("L", (8, 6), 200).save(pair / "alpha" / f"{stem}.png")
        Image.new("RGBA", (8, 6)).save(pair / "color" / f"{stem}.png")  # duplicate: skipped
    Image.new("RGBA", (5, 5), (1, 2, 3, 255)).save(tmp_path / "cut.png")
    Image.new("RGB", (5, 5)).save(tmp_path / "plain.jpg")
    found = {s.id: s.kind for s in discover_subjects(tmp_path)}
    assert found == {"set/original/a.jpg": "pair", "set/original/b.jpg": "pair",
                     "cut.png": "cutout", "plain.jpg": "rgb"}
    train, val = split_sources(discover_subjects(tmp_path), 0.25, "--subjects")
    assert len(val) == 1 and len(train) == 3 and not {s.id for s in train} & {s.id for s in val}
    with pytest.raises(ConfigError):
        discover_subjects(tmp_path / "missing")
    with pytest.raises(ConfigError):
        split_sources(discover_subjects(tmp_path)[:1], 0.1, "--subjects")


def test_config_rules():
    with pytest.raises(ConfigError):
        RenderConfig(frames_min=1)
    with pytest.raises(ConfigError):
        RenderConfig(resolution=100)
    with pytest.raises(ConfigError):
        RenderConfig(fstop_min=8, fstop_max=4)
    with pytest.raises(ConfigError):
        RenderConfig(engine="cycles")
    with pytest.raises(ConfigError, match="pip install bpy"):  # no Blender Python there
        render_dataset("/nonexistent/never-created", RenderConfig(engine="blender", blender_python="/nonexistent/python"))


def test_png_writer_round_trip():
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16), rng.integers(0, 256, (4, 9), dtype=np.uint8)):
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fs_png_{arr.dtype}.png"
        path.write_bytes(encode_png(arr))
        assert np.array_equal(read_png(path), arr)
        path.unlink()


# ------------------------------------------------------------------------------------------
# CLI


def test_cli_renders_one_sample(tmp_path: Path):
    from focusstack.cli.app import app

    result = CliRunner().invoke(
        app, ["render-dataset", str(tmp_path / "ds"), "--samples", "1", "--resolution", "64",
              "--frames-min", "2", "--frames-max", "2", "--json", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rendered"] == 1
    assert (tmp_path / "ds" / "samples" / "000000" / "meta.json").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--frames-min", "1"], "frames"),
        (["--resolution", "100"], "resolution"),
        (["--engine", "blender", "--blender-python", "/nonexistent/python"], "pip install bpy"),
        (["--fstop-min", "9", "--fstop-max", "2"], "f-stop"),
    ],
)
def test_cli_bad_options_exit_2(tmp_path: Path, args, words):
    from focusstack.cli.app import app

    result = CliRunner().invoke(app, ["render-dataset", str(tmp_path / "ds"), "--samples", "1", *args])
    assert result.exit_code == 2
    assert words in result.output.lower()
    assert not (tmp_path / "ds" / "samples").exists()


def test_large_blurs_on_downscaled_copies_match_full_resolution():
    import focusstack.rendering.thinlens as T

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 128, 128, generator=g)
    x[:, 40:90, 20:100] = 1.0
    x = F.pad(x, (48, 48, 48, 48))
    for d in (60.0, 90.0):
        assert T.blur_scale(d) > 1
        fast = T._blur_slice(x, d, {}, {})
        exact = torch.fft.irfft2(
            torch.fft.rfft2(x, s=x.shape[-2:]) * T._disc_fft(d, tuple(x.shape[-2:]), x.device), s=x.shape[-2:]
        )
        rms = float(((fast - exact) ** 2).mean().sqrt())
        assert 10 * math.log10(1 / rms**2) > 55


def test_ray_without_ray_installed_is_a_usage_error(tmp_path: Path):
    pytest.importorskip("typer")
    try:
        import ray  # noqa: F401

        pytest.skip("ray is installed")
    except ImportError:
        pass
    from focusstack.cli.app import app

    result = CliRunner().invoke(app, ["render-dataset", str(tmp_path / "ds"), "-n", "1", "-r", "64", "--ray"])
    assert result.exit_code == 2
    assert "pip install" in result.output
    assert not (tmp_path / "ds").exists()


@pytest.mark.slow
def test_ray_tasks_give_the_same_bytes(tmp_path: Path):
    pytest.importorskip("ray")
    cfg = tiny_config(samples=2)
    render_dataset(tmp_path / "local", cfg)
    render_dataset(tmp_path / "ray", tiny_config(samples=2, ray=True))
    assert sample_files(tmp_path / "local" / "samples") == sample_files(tmp_path / "ray" / "samples")


def test_frames_read_back_with_focusstack_io(tmp_path: Path):
    io = pytest.importorskip("focusstack.io")
    if not hasattr(io, "read_image"):
        pytest.skip("focusstack.io.read_image not available")
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (16, 24, 3), dtype=np.uint16)
    (tmp_path / "f.png").write_bytes(encode_png(arr))
    pixels = io.read_image(tmp_path / "f.png").pixels
    assert np.array_equal(np.rint(pixels * 65535).astype(np.uint16), arr)
