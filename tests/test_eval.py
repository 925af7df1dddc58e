"""`focusstack eval` end to end: pairing by stem, the render-dataset layout, outputs, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.jobs.eval import EvalConfig, evaluate, parse_method
from focusstack.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()

H, W = 176, 192  # >= 161: MS-SSIM and IW-SSIM fit


def _texture(seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random((H, W, 3)), (2, 2, 0))
    x = (x - x.min()) / (x.max() - x.min())
    return (0.05 + 0.9 * x).astype(np.float32)


def _save8(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _stack(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two frames: left half sharp in frame 0, right half sharp in frame 1; the mask of frame 0."""
    from scipy import ndimage as ndi

    blur = ndi.gaussian_filter(gt, (3, 3, 0))
    m = np.zeros(gt.shape[:2], bool)
    m[:, : W // 2] = True
    f0 = np.where(m[..., None], gt, blur)
    f1 = np.where(m[..., None], blur, gt)
    return f0, f1, m


@pytest.fixture
def folders(tmp_path):
    """gt/<stem>.png, src/<stem>/{a,b}.png, masks/<stem>.png, good/ (the GT), mean/ (mean of frames)."""
    for i, stem in enumerate(("s01", "s02", "s03")):
        gt = _texture(i)
        f0, f1, m = _stack(gt)
        _save8(tmp_path / "gt" / f"{stem}.png", gt)
        _save8(tmp_path / "src" / stem / "a.png", f0)
        _save8(tmp_path / "src" / stem / "b.png", f1)
        _save8(tmp_path / "masks" / f"{stem}.png", m.astype(np.float32))
        _save8(tmp_path / "good" / f"{stem}.png", gt)
        _save8(tmp_path / "mean" / f"{stem}.png", 0.5 * (f0 + f1))
    return tmp_path


def _eval(args, **kw):
    return runner.invoke(app, ["eval", "-q", "--threads", "1", *args], **kw)


def test_json_shape_and_ranking(folders, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(folders / "torch"))  # empty: no LPIPS/DISTS/PieAPP weights
    f = folders
    r = _eval([str(f / "good"), "--method", f"mean={f / 'mean'}", "--gt", str(f / "gt"), "--sources", str(f / "src"),
               "--masks", str(f / "masks"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "focusstack-eval/1"
    assert [m["name"] for m in doc["methods"]] == ["good", "mean"]
    keys = [m["key"] for m in doc["metrics"]]
    assert len(keys) == 15 and {"q_mi", "q_abf", "q_y", "miou", "psnr", "lpips"} <= set(keys)
    assert len(doc["images"]) == 6
    for rec in doc["images"]:
        assert set(rec["scores"]) == set(keys)
        for k, v in rec["scores"].items():
            # a number, or null with a reason: never 0/NaN standing in for a missing score
            assert (v is None) == (k in rec["unavailable"]), (k, v)
            assert v is None or np.isfinite(v)
    # no weights: unavailable, named, with the folder
    for k, name in (("lpips", "lpips_weights.pt"), ("dists", "dists_weights.pt"), ("pieapp", "PieAPPv0.1.pth")):
        assert doc["summary"]["good"][k]["mean"] is None
        assert name in doc["unavailable"][k] and str(folders / "torch") in doc["unavailable"][k]
    good, mean = doc["summary"]["good"], doc["summary"]["mean"]
    assert good["psnr"]["mean"] == pytest.approx(80.0) and good["ssim"]["mean"] == pytest.approx(1.0)
    assert good["mse"]["mean"] == 0.0 and good["mse"]["n"] == 3
    for k in ("q_mi", "q_abf", "q_y", "miou", "ssim", "ms_ssim", "iw_ssim", "haarpsi"):
        assert good[k]["mean"] > mean[k]["mean"], k
    for k in ("mse", "mdsi", "ms_gmsd"):
        assert good[k]["mean"] < mean[k]["mean"], k
    assert good["miou"]["mean"] > 0.95
    assert "LPIPS" in r.stderr and "unavailable" in r.stderr and "good" in r.stderr


def test_csv_is_written_and_never_overwritten_silently(folders):
    f = folders
    out = f / "scores.csv"
    args = [str(f / "good"), "--gt", str(f / "gt"), "--metrics", "psnr,mse,lpips", "--csv", str(out)]
    r = _eval(args)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [row["stem"] for row in rows] == ["s01", "s02", "s03"]
    assert set(rows[0]) == {"method", "stem", "pred", "psnr", "mse", "lpips"}
    assert float(rows[0]["mse"]) == 0.0
    out.write_text("precious")
    r = _eval(args)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert out.read_text() == "precious"
    assert _eval([*args, "--overwrite"]).exit_code == 0 and out.read_text() != "precious"


def test_missing_gt_file_names_it(folders):
    (folders / "gt" / "s02.png").unlink()
    r = _eval([str(folders / "good"), "--gt", str(folders / "gt")])
    assert r.exit_code == 1
    assert "s02.png" in r.output and "ground truth" in r.output


def test_size_mismatch_names_the_file(folders):
    _save8(folders / "good" / "s03.png", np.zeros((H, W - 8, 3), np.float32))
    r = _eval([str(folders / "good"), "--gt", str(folders / "gt"), "--metrics", "psnr"])
    assert r.exit_code == 1 and "s03.png" in r.output and "size" in r.output


def test_usage_errors_exit_2(folders):
    f = folders
    assert _eval([str(f / "good"), "--gt", str(f / "gt"), "--metrics", "psnr,nonsense"]).exit_code == 2
    r = _eval([str(f / "good"), "--gt", str(f / "gt"), "--metrics", "q_abf"])
    assert r.exit_code == 2 and "--sources" in r.output
    assert _eval([str(f / "good")]).exit_code == 2  # nothing to score against
    assert _eval([str(f / "good"), "--gt", str(f / "nowhere")]).exit_code == 2
    assert _eval([str(f / "good"), "--gt", str(f / "gt"), "--method", "bad"]).exit_code == 2
    with pytest.raises(UsageError):
        parse_method("=x")


def test_methods_must_hold_the_same_images(folders):
    (folders / "mean" / "s01.png").unlink()
    r = _eval([str(folders / "good"), "--method", f"mean={folders / 'mean'}", "--gt", str(folders / "gt")])
    assert r.exit_code == 1 and "s01" in r.output


def test_render_dataset_layout_and_plots(tmp_path):
    """samples/<id>/{gt.png, frame_*.png, mask_*.png} read directly; difficulty plots."""
    root = tmp_path / "ds"
    (root / "samples").mkdir(parents=True)
    (root / "manifest.json").write_text("{}")
    for i in range(2):
        sid = f"{i:06d}"
        gt = _texture(10 + i)
        f0, f1, m = _stack(gt)
        d = root / "samples" / sid
        _save8(d / "gt.png", gt)
        _save8(d / "frame_00.png", f0)
        _save8(d / "frame_01.png", f1)
        _save8(d / "mask_00.png", m.astype(np.float32))
        _save8(d / "mask_01.png", (~m).astype(np.float32))
        _save8(tmp_path / "pred" / f"{sid}.png", gt)
        _save8(tmp_path / "naive" / f"{sid}.png", f0)
    plots = tmp_path / "plots"
    r = _eval([str(tmp_path / "pred"), "--method", f"naive={tmp_path / 'naive'}", "--gt", str(root), "--sources", str(root),
               "--masks", str(root), "--metrics", "psnr,ssim,ms_ssim,q_abf,miou", "--plots", str(plots), "--bins", "4", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert s["pred"]["miou"]["mean"] > 0.95 and s["pred"]["q_abf"]["mean"] > s["naive"]["q_abf"]["mean"]
    diff = doc["difficulty"]
    assert diff["patch"] == 64 and diff["patches"] == 2 * (H // 64) * (W // 64)
    assert sum(diff["counts"]) == diff["patches"] and len(diff["edges"]) == 5
    assert "ms_ssim" in diff["unavailable"] and "161" in diff["unavailable"]["ms_ssim"]
    # the naive output (frame 0) is exact on easy patches, worse on hard ones
    naive = [v for v in diff["methods"]["naive"]["psnr"] if v is not None]
    assert naive[0] > naive[-1]
    for k in ("psnr", "ssim"):
        p = plots / f"difficulty_{k}.png"
        assert p.is_file() and Image.open(p).format == "PNG"
    assert not (plots / "difficulty_ms_ssim.png").exists()
    # a second run refuses to overwrite the plots
    r2 = _eval([str(tmp_path / "pred"), "--gt", str(root), "--sources", str(root), "--metrics", "psnr", "--plots", str(plots)])
    assert r2.exit_code == 2 and "--overwrite" in r2.output


def test_sixteen_bit_inputs_keep_their_precision(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    gt = rng.integers(1000, 60000, (40, 48, 3), dtype=np.uint16)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", gt)
    tifffile.imwrite(tmp_path / "pred" / "a.tif", gt + 1)  # one 16-bit step: invisible in 8 bits
    res = evaluate(EvalConfig(methods=(("p", tmp_path / "pred"),), gt=tmp_path / "gt", metrics=("mse",), show_progress=False))
    assert res.images[0]["scores"]["mse"] == pytest.approx((1 / 65535) ** 2, rel=1e-3)


def test_explicit_prediction_masks_are_used(folders):
    f = folders
    # a wrong decision map beside the good output: mIoU follows the file, not the image
    for stem in ("s01", "s02", "s03"):
        m = np.zeros((H, W), np.float32)
        m[:, W // 2 :] = 1  # the opposite of the GT mask
        _save8(f / "good" / "masks" / f"{stem}.png", m)
    res = evaluate(EvalConfig(methods=(("good", f / "good"),), masks=f / "masks", sources=f / "src", metrics=("miou",),
                              show_progress=False))
    assert res.summary["good"]["miou"]["mean"] == pytest.approx(0.0)


def test_help_reads_the_config_defaults_and_the_cli_imports_no_torch():
    import subprocess
    import sys

    d = EvalConfig()
    r = runner.invoke(app, ["eval", "--help"], terminal_width=200)
    assert r.exit_code == 0
    for opt in ("--gt", "--sources", "--masks", "--method", "--metrics", "--json", "--csv", "--plots", "--download-weights"):
        assert opt in r.output
    assert f"[default: {d.patch}]" in r.output and f"[default: {d.bins}]" in r.output
    code = "import sys, focusstack.cli.eval; assert 'piq' not in sys.modules and 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_methods_without_pred_dir_and_cuda_without_a_gpu(folders):
    import torch

    f = folders
    r = _eval(["--method", f"a={f / 'good'}", "--method", f"b={f / 'mean'}", "--gt", str(f / "gt"), "--metrics", "mse", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["summary"]["a"]["mse"]["mean"] == 0.0 and doc["summary"]["b"]["mse"]["mean"] > 0
    if not torch.cuda.is_available():
        r = _eval([str(f / "good"), "--gt", str(f / "gt"), "--metrics", "mse", "--device", "cuda"])
        assert r.exit_code == 2 and "cuda" in r.output.lower()


def test_difficulty_in_the_json_without_plots(folders):
    f = folders
    base = [str(f / "good"), "--gt", str(f / "gt"), "--sources", str(f / "src"), "--metrics", "psnr,q_abf", "--json"]
    r = _eval(base)
    assert r.exit_code == 0 and json.loads(r.stdout)["difficulty"] is None
    r = _eval([*base, "--difficulty", "--patch", "32", "--bins", "3"])
    assert r.exit_code == 0, r.output
    diff = json.loads(r.stdout)["difficulty"]
    assert diff["patch"] == 32 and diff["patches"] == 3 * (H // 32) * (W // 32) == sum(diff["counts"])
    # the prediction is the GT: every patch is perfect whatever its difficulty
    assert all(v is None or v == pytest.approx(80.0) for v in diff["methods"]["good"]["psnr"])
    assert _eval([str(f / "good"), "--gt", str(f / "gt"), "--difficulty"]).exit_code == 2  # needs --sources
    r = _eval([str(f / "good"), "--gt", str(f / "gt"), "--sources", str(f / "src"), "--metrics", "ms_ssim,q_abf",
               "--plots", str(f / "plots")])
    assert r.exit_code == 2 and "nothing to plot" in r.output
