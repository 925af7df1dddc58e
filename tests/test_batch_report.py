"""`fuse --batch` that reports (issue 18), the batch cases of issue 19 (4, 10, 12), tiny frames
(19.9), logging and progress, --dry-run, --depth-map, and the HTML contact sheet with a headless
Chromium screenshot. Stacks are small seeded focus stacks (one texture, blurred differently per
frame) fused with the default decision engine: no networks, a fraction of a second each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focusstack.jobs import batch as batch_job
from focusstack.jobs import fuse as fuse_job
from focusstack.cli.app import app
from focusstack.io import read_image

runner = CliRunner()


def _focus_stack(folder, n=3, size=(72, 96), seed=0, tint=(1.0, 1.0, 1.0)):
    """Frame k is sharp in the k-th vertical band and blurred elsewhere (a real focus stack)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    sharp = np.clip(0.7 * coarse + 0.3 * rng.random((h, w, 3)).astype(np.float32), 0, 1) * np.float32(tint)
    blur = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    bands = np.array_split(np.arange(w), n)
    for k in range(n):
        img = blur.copy()
        img[:, bands[k]] = sharp[:, bands[k]]
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"f{k + 1}.png")
    return folder


def _batch_root(tmp_path):
    root = tmp_path / "root"
    _focus_stack(root / "a")
    _focus_stack(root / "b", seed=1)
    bad = _focus_stack(root / "c_bad", seed=2)
    (bad / "f2.png").write_text("broken")
    return root


def _fuse(*args, **kw):
    return runner.invoke(app, ["fuse", *map(str, args)], **kw)


# ---- a batch that reports ----------------------------------------------------------------------


def test_batch_prints_one_line_per_stack_and_repeats_failures(tmp_path):
    root = _batch_root(tmp_path)
    out = tmp_path / "out"
    r = _fuse("--batch", root, "-o", out, "--ext", "png")
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert f"[1/3] a: wrote {out / 'a.png'}" in "\n".join(lines)
    assert any(line.startswith("[2/3] b: wrote ") for line in lines)
    failed = [line for line in lines if line.startswith("[3/3] c_bad: failed: ")]
    assert len(failed) == 1 and "f2.png" in failed[0] and "fix:" in failed[0]
    # the summary repeats every failure with its reason, after the per-stack lines
    summary = r.stderr[r.stderr.index("batch failed"):]
    assert "c_bad" in summary and "f2.png" in summary and "1 of 3 stacks failed" in summary
    assert "fused 2, skipped 0 (exist), failed 1" in r.stdout  # the result goes to stdout
    assert "[1/3]" not in r.stdout

    r2 = _fuse("--batch", root, "-o", out, "--ext", "png")
    assert r2.exit_code == 1
    assert f"[1/3] a: skipped ({out / 'a.png'} exists)" in r2.stderr
    assert "fused 0, skipped 2 (exist), failed 1" in r2.stdout


def test_batch_quiet_keeps_only_failures(tmp_path):
    root = _batch_root(tmp_path)
    r = _fuse("--batch", root, "-o", tmp_path / "out", "--ext", "png", "-q")
    assert r.exit_code == 1
    assert "[3/3] c_bad: failed" in r.stderr and "[1/3]" not in r.stderr and "step" not in r.stderr


def test_batch_progress_json_events(tmp_path):
    root = _batch_root(tmp_path)
    r = _fuse("--batch", root, "-o", tmp_path / "out", "--ext", "png", "--progress", "json")
    assert r.exit_code == 1
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    stacks = [e for e in events if e["event"] == "stack"]
    assert [(e["index"], e["total"], e["status"]) for e in stacks] == [(1, 3, "wrote"), (2, 3, "wrote"), (3, 3, "failed")]
    assert all(e["event"] in ("stack", "progress") for e in events)


def test_batch_ext_webp_is_refused_once_up_front(tmp_path):
    root = _batch_root(tmp_path)
    out = tmp_path / "out"
    r = _fuse("--batch", root, "-o", out, "--ext", "webp")
    assert r.exit_code == 2 and "webp" in r.output and "Traceback" not in r.output
    assert not out.exists() and "[1/" not in r.output
    with pytest.raises(Exception) as exc:  # the library refuses it too, before any stack
        batch_job.fuse_batch(root, out, ext="webp")
    assert "--ext" in str(exc.value) and not out.exists()


def test_batch_output_an_existing_file_is_a_usage_error(tmp_path):
    root = _batch_root(tmp_path)
    f = tmp_path / "existing.tif"
    f.write_bytes(b"keep me")
    r = _fuse("--batch", root, "-o", f)
    assert r.exit_code == 2, r.output
    assert "is a file" in r.output and "fix:" in r.output and "FileExistsError" not in r.output
    assert f.read_bytes() == b"keep me"


def test_batch_outdir_inside_root_is_never_a_stack(tmp_path):
    root = tmp_path / "root"
    _focus_stack(root / "a")
    _focus_stack(root / "b", seed=1)
    out = root / "_out"
    r1 = _fuse("--batch", root, "-o", out, "--ext", "png")
    assert r1.exit_code == 0, r1.output
    r2 = _fuse("--batch", root, "-o", out, "--ext", "png", "--json")
    assert r2.exit_code == 0, r2.output
    res = json.loads(r2.stdout)
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]  # no _out/_out.png
    assert res["excluded"] == [{"folder": str(out), "reason": "the output folder (-o)"}]
    assert "not a stack" in r2.stderr and "_out" in r2.stderr


def test_batch_report_html(tmp_path):
    root = _batch_root(tmp_path)
    out, rep = tmp_path / "out", tmp_path / "sheet.html"
    r = _fuse("--batch", root, "-o", out, "--ext", "png", "--report", rep)
    assert r.exit_code == 1
    text = rep.read_text()
    assert text.count('<tr class="') == 3
    assert 'href="out/a.png"' in text and 'href="out/b.png"' in text  # links relative to the sheet
    assert text.count("data:image/jpeg;base64,") == 4  # output + sharpest frame for a and b
    assert "f2.png" in text and 'class="failed"' in text  # the failure and its reason
    # a rerun replaces its own report (skipped stacks still show their output)
    r2 = _fuse("--batch", root, "-o", out, "--ext", "png", "--report", rep)
    assert r2.exit_code == 1 and rep.read_text().count("data:image/jpeg;base64,") == 2
    # a foreign file is never replaced without --overwrite
    other = tmp_path / "mine.html"
    other.write_text("<html>my notes</html>")
    r3 = _fuse("--batch", root, "-o", out, "--ext", "png", "--report", other)
    assert r3.exit_code == 2 and other.read_text() == "<html>my notes</html>"


def test_report_names_the_sharpest_frame(tmp_path):
    from focusstack.io.report import StackThumbs

    rng = np.random.default_rng(3)
    sharp = rng.random((64, 64, 3)).astype(np.float32)
    t = StackThumbs()
    for name, sigma in (("f1.png", 3.0), ("f2.png", 0.0), ("f3.png", 1.5)):
        t.on_frame(tmp_path / name, sharp if sigma == 0 else cv2.GaussianBlur(sharp, (0, 0), sigma))
    assert t.best_name == "f2.png" and t.frame_thumb.dtype == np.uint8


SCREENSHOT = os.environ.get("FOCUSSTACK_SCREENSHOT")  # keep the screenshot here (for a report)


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="headless Chromium (Debian's chromium) is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    """The thumbnails really decode: a magenta-tinted stack shows a magenta block on screen."""
    root = tmp_path / "root"
    _focus_stack(root / "green_stack", tint=(0.2, 1.0, 0.2), seed=4)
    _focus_stack(root / "magenta_stack", tint=(1.0, 0.1, 1.0), seed=5)
    bad = _focus_stack(root / "z_broken", seed=6)
    (bad / "f1.png").write_text("broken")
    rep = tmp_path / "report.html"
    r = _fuse("--batch", root, "-o", tmp_path / "out", "--ext", "png", "--report", rep)
    assert r.exit_code == 1
    shot = tmp_path / "shot.png"
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1100,1000", rep.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    r_, g, b = img[..., 0], img[..., 1], img[..., 2]
    magenta = (r_ - g > 40) & (b - g > 40)
    green = (g - r_ > 40) & (g - b > 40)
    # two thumbnails (output + sharpest frame) of 96x72 px each: more than one thumbnail's worth
    assert magenta.sum() > 1.2 * 96 * 72 and green.sum() > 1.2 * 96 * 72, (magenta.sum(), green.sum())
    red_text = (r_ > 150) & (g < 80) & (b < 80)  # the failed row's status
    assert red_text.sum() > 20
    if SCREENSHOT:
        shutil.copy(shot, SCREENSHOT)


# ---- tiny frames (19.9) ------------------------------------------------------------------------


@pytest.mark.parametrize("side,n", [(1, 3), (1, 9), (8, 3)])
def test_tiny_frames_skip_alignment_with_a_warning(tmp_path, side, n):
    s = tmp_path / "s"
    s.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(s / f"f{i}.png")
    r = _fuse(s, "-o", tmp_path / "o.png", "--json")
    assert r.exit_code == 0, r.output
    assert "16 px" in r.stderr and "unaligned" in r.stderr
    res = json.loads(r.stdout)
    assert (res["width"], res["height"]) == (side, side) and res["alignment"]["enabled"] is False
    assert res["focus_order"]["source"] == "name"


# ---- logging and progress ----------------------------------------------------------------------


def test_progress_totals_are_known_up_front(tmp_path):
    s = _focus_stack(tmp_path / "long", n=10)
    r = _fuse(s, "-o", tmp_path / "o.png", "--slab-size", "4", "--progress", "json")
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert len(events) > 10
    totals = {e["total"] for e in events}
    assert totals == {10 + 3 + 1}, totals  # 10 frames analysed, 3 slabs, 1 merge
    done = [e["done"] for e in events]
    assert done == sorted(done) and done[-1] == 14


def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    s = _focus_stack(tmp_path / "s")
    r = _fuse(s, "-o", tmp_path / "o.png")
    assert r.exit_code == 0
    assert "fusing s: 100% step 4/4" in r.stderr
    assert r.stdout.startswith(f"wrote {tmp_path / 'o.png'} (96x72, 8-bit)")  # the result on stdout
    assert "wrote" not in r.stderr


def test_verbose_and_quiet(tmp_path):
    s = _focus_stack(tmp_path / "s")
    q = _fuse(s, "-o", tmp_path / "nested" / "q.png", "-q")
    assert q.exit_code == 0 and q.stderr == ""
    v = _fuse(s, "-o", tmp_path / "nested2" / "v.png", "-v")
    assert v.exit_code == 0 and "info: created the output folder" in v.stderr


def test_single_fuse_creates_its_output_folder_only_on_success(tmp_path):
    s = _focus_stack(tmp_path / "s")
    r = _fuse(s, "-o", tmp_path / "new" / "deep" / "o.tif", "-q")
    assert r.exit_code == 0 and (tmp_path / "new" / "deep" / "o.tif").is_file()
    bad = _focus_stack(tmp_path / "bad")
    (bad / "f2.png").write_text("broken")
    r = _fuse(bad, "-o", tmp_path / "never" / "o.tif", "-q")
    assert r.exit_code == 1 and not (tmp_path / "never").exists()


# ---- options as choices ------------------------------------------------------------------------


def test_choices_are_listed_and_checked_by_typer(tmp_path):
    h = runner.invoke(app, ["fuse", "--help"], env={"COLUMNS": "250"})
    assert h.exit_code == 0
    for listed in ("hybrid|vaeedof|decision", "auto|cpu|cuda", "similarity|affine|homography", "tif|tiff|png|jpg|jpeg"):
        assert listed in h.output, listed
    assert "<bool>" not in h.output and "<bool>" not in runner.invoke(app, ["--help"], env={"COLUMNS": "250"}).output
    for opt, bad in (("--engine", "fast"), ("--device", "tpu"), ("--precision", "fp8"), ("--align-model", "rigid"),
                     ("--focus-order", "random"), ("--backend", "tf"), ("--progress", "loud")):
        r = _fuse(tmp_path, "-o", tmp_path / "o.png", opt, bad)
        assert r.exit_code == 2 and "Invalid value" in r.output and bad in r.output, (opt, r.output)


def test_cli_defaults_come_from_the_config():
    from focusstack.config import AlignConfig, FuseConfig

    h = runner.invoke(app, ["fuse", "--help"], env={"COLUMNS": "250"})
    assert f"[default: {FuseConfig().engine}]" in h.output and f"[default: {AlignConfig().model}]" in h.output


# ---- --dry-run -------------------------------------------------------------------------------------


def test_dry_run_reads_headers_only_and_writes_nothing(tmp_path, monkeypatch):
    root = _batch_root(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")

    def no_decoding(*a, **k):
        raise AssertionError("--dry-run decoded a frame")

    monkeypatch.setattr(fuse_job, "read_image", no_decoding)
    monkeypatch.setattr(batch_job, "read_image", no_decoding)
    r = _fuse("--batch", root, "-o", out, "--ext", "png", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    by = {p["stack"]: p for p in plan["stacks"]}
    assert by["a"]["action"] == "skip (exists)" and by["b"]["action"] == "write"
    assert by["c_bad"]["action"] == "fail" and "f2.png" in by["c_bad"]["reason"]
    assert by["b"]["frames"] == ["f1.png", "f2.png", "f3.png"] and by["b"]["order"].startswith("name")
    assert sorted(os.listdir(out)) == ["a.png"] and (out / "a.png").read_bytes() == b"old"
    t = _fuse(root / "b", "-o", tmp_path / "x" / "b.tif", "--dry-run")
    assert t.exit_code == 0 and "f1.png, f2.png, f3.png" in t.stdout and "(write)" in t.stdout
    assert not (tmp_path / "x").exists()


# ---- --depth-map ---------------------------------------------------------------------------------


def test_depth_map_follows_the_sharp_bands(tmp_path):
    import tifffile

    s = _focus_stack(tmp_path / "s", n=3, size=(90, 120))
    r = _fuse(s, "-o", tmp_path / "o.tif", "--no-align", "--depth-map", tmp_path / "d.tif",
              "--depth-map-preview", tmp_path / "p.png", "--json")
    assert r.exit_code == 0, r.output
    d = tifffile.imread(tmp_path / "d.tif")
    assert d.dtype == np.uint16 and d.shape[:2] == (90, 120)
    g = d[..., 0].astype(np.float64) / 65535 * 2  # focus-order index
    assert abs(np.median(g[:, 5:35]) - 0) < 0.25 and abs(np.median(g[:, 45:75]) - 1) < 0.25
    assert abs(np.median(g[:, 85:115]) - 2) < 0.25
    p = np.asarray(Image.open(tmp_path / "p.png"))
    assert p.shape == (90, 120, 3) and p.dtype == np.uint8
    assert p[:, 5:35, 2].mean() > p[:, 5:35, 0].mean()  # turbo: blue at the first frame
    assert json.loads(r.stdout)["depth_map"]["file"] == str(tmp_path / "d.tif")


def test_depth_map_inpaints_where_no_frame_is_sharp(tmp_path):
    from focusstack.stack.depth import DepthAccumulator

    rng = np.random.default_rng(1)
    h, w = 80, 80
    sharp = rng.random((h, w, 3)).astype(np.float32)
    blur = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    acc = DepthAccumulator(2)
    for k in range(2):
        f = blur.copy()
        f[:, :40] = sharp[:, :40] if k == 0 else blur[:, :40]
        f[:, 40:] = sharp[:, 40:] if k == 1 else blur[:, 40:]
        f[16:64, 16:64] = 0.5  # flat in every frame: no frame is sharp here
        acc.update(k, f)
    dm = acc.finish()
    assert not dm.decided[40, 40] and dm.decided[5, 5]
    assert np.isfinite(dm.index).all() and 0 <= dm.index.min() and dm.index.max() <= 1
    assert dm.index[40, 10] < 0.3 and dm.index[40, 70] > 0.7


def test_batch_depth_maps_one_per_stack(tmp_path):
    root = tmp_path / "root"
    _focus_stack(root / "a")
    _focus_stack(root / "b", seed=1)
    r = _fuse("--batch", root, "-o", tmp_path / "out", "--ext", "png", "--depth-map", tmp_path / "depth")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path / "depth")) == ["a.depth.png", "b.depth.png"]
    assert read_image(tmp_path / "depth" / "a.depth.png").bit_depth == 16


def test_depth_map_bad_suffix_is_refused_before_work(tmp_path):
    s = _focus_stack(tmp_path / "s")
    r = _fuse(s, "-o", tmp_path / "o.png", "--depth-map", tmp_path / "d.jpg")
    assert r.exit_code == 2 and "16-bit" in r.output and not (tmp_path / "o.png").exists()


def test_output_inside_the_input_folder_is_not_a_frame_on_a_rerun(tmp_path):
    s = _focus_stack(tmp_path / "s")
    out = s / "fused.png"
    r1 = _fuse(s, "-o", out, "--json", "--depth-map", s / "depth.png")
    assert r1.exit_code == 0, r1.output
    assert json.loads(r1.stdout)["frames"] == 3
    r2 = _fuse(s, "-o", out, "--json", "--overwrite", "--depth-map", s / "depth.png")
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["frames"] == 3  # neither fused.png nor depth.png became a frame
