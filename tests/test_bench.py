"""`focusstack bench`: option parsing and exit codes, one JSON entry per (backend, precision,
frames), the baseline gate (exit 1 on a regression, 0 without), the plot and --full. Tiny sizes
(64 px, one timed call): these test the command, never the speed."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from focusstack.jobs.bench import BenchConfig, compare_to_baseline, parse_frames
from focusstack.cli.app import app
from focusstack.errors import ConfigError
from focusstack.networks.weights import save_model_dir

from conftest import small_fusion  # noqa: E402

runner = CliRunner()
TINY = ["--size", "64", "--repeats", "1", "--warmup", "0", "-q"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def weights_args(tmp_path_factory, vae_dir):
    folder = tmp_path_factory.mktemp("bench_fusion")
    m = small_fusion()
    save_model_dir(m, m.cfg.to_dict(), folder, metadata={"trained_steps": 0})  # bench accepts untrained
    return ["--vae-weights", str(vae_dir), "--fusion-weights", str(folder)]


@pytest.fixture(autouse=True)
def shared_cache(tmp_path_factory, monkeypatch):
    # The ONNX cache tests/test_onnx.py fills: one export per test session.
    monkeypatch.setenv("FOCUSSTACK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fscache"))


def _bench(*args):
    return runner.invoke(app, ["bench", *args])


# ---- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [("2-7", (2, 3, 4, 5, 6, 7)), ("2,7", (2, 7)), ("7,2,2", (2, 7)), ("2,4-5", (2, 4, 5)), (" 3 ", (3,))],
)
def test_parse_frames(spec, want):
    assert parse_frames(spec) == want


@pytest.mark.parametrize("spec", ["1-9", "0", "8", "2-x", "7-2", "", "2,,3", "-3"])
def test_parse_frames_rejects(spec):
    with pytest.raises(ConfigError):
        parse_frames(spec)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--frames", "1-9"], "between 2 and 7"),
        (["--frames", "two"], "--frames"),
        (["--backend", "tensorrt"], "--backend"),
        (["--precision", "int4"], "--precision"),
        (["--size", "100"], "multiple of 64"),
        (["--repeats", "0"], "--repeats"),
        (["--max-regression", "150"], "--max-regression"),
        (["--plot", "chart.bmp"], "--plot"),
    ],
)
def test_bad_options_exit_2_with_a_message(args, needle, weights_args):
    # options given later win: TINY first, then the bad one
    r = _bench(*TINY, *args, "--backend", "torch", *weights_args) if "--backend" not in args else _bench(*TINY, *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_config_defaults_are_the_small_ci_run():
    d = BenchConfig()
    assert d.size == 256 and d.frames == (2, 7) and d.precisions == ("fp32",) and d.repeats >= 1


# ---- measurements ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory, weights_args):
    """One tiny torch run (fp32 + bf16, 2 and 3 frames) with a plot and --full, as JSON."""
    out = tmp_path_factory.mktemp("bench_run")
    r = _bench("--backend", "torch", "--precision", "fp32", "--precision", "bf16", "--frames", "2,3",
               "--plot", str(out / "fig6.png"), "--full", "--full-size", "128", "--json", *TINY, *weights_args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), out


def test_json_has_an_entry_per_precision_and_frame_count(torch_run):
    data, out = torch_run
    assert data["schema"] == "focusstack-bench/1"
    keys = sorted((e["backend"], e["precision"], e["frames"]) for e in data["entries"])
    assert keys == [("torch", p, k) for p in ("bf16", "fp32") for k in (2, 3)]
    for e in data["entries"]:
        assert e["device"] == "cpu" and e["size"] == 64
        assert e["images_per_s"] > 0 and e["seconds_per_image"] > 0
        lo, hi = e["images_per_s_iqr"]
        assert e["images_per_s_min"] <= lo <= e["images_per_s"] <= hi <= e["images_per_s_max"]
        assert e["peak_memory_mb"] > 0 and len(e["times_s"]) == 1
    assert [f["size"] for f in data["full"]] == [128, 128] and all(f["seconds"] > 0 for f in data["full"])
    assert data["weights"]["fusion_config"]["channels"] == [32, 64, 64]
    with Image.open(out / "fig6.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600


def test_json_has_every_backend(weights_args):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    r = _bench("--backend", "torch", "--backend", "onnx", "--precision", "fp32", "--precision", "bf16",
               "--frames", "2,7", "--json", *TINY, *weights_args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    keys = sorted((e["backend"], e["precision"], e["frames"]) for e in data["entries"])
    assert keys == [("onnx", "fp32", 2), ("onnx", "fp32", 7), ("torch", "bf16", 2), ("torch", "bf16", 7),
                    ("torch", "fp32", 2), ("torch", "fp32", 7)]
    assert [(s["backend"], s["precision"]) for s in data["skipped"]] == [("onnx", "bf16")]


def test_missing_onnxruntime_is_a_clear_usage_error(weights_args, monkeypatch):
    import focusstack.jobs.bench as jb

    monkeypatch.setattr(jb, "onnx_available", lambda: False)
    r = _bench("--backend", "onnx", *TINY, *weights_args)
    assert r.exit_code == 2 and "pip install onnx onnxscript onnxruntime" in r.output


# ---- baseline -------------------------------------------------------------------------------


def _baseline(tmp_path, data, factor):
    entries = [dict(e, images_per_s=e["images_per_s"] * factor) for e in data["entries"]]
    p = tmp_path / f"baseline_{factor}.json"
    p.write_text(json.dumps(dict(data, entries=entries)))
    return p


def test_baseline_regression_exits_1_and_names_the_entries(torch_run, tmp_path, weights_args):
    data, _ = torch_run
    args = ["--backend", "torch", "--frames", "2", *TINY, *weights_args]
    r = _bench(*args, "--baseline", str(_baseline(tmp_path, data, 100.0)), "--max-regression", "20")
    assert r.exit_code == 1, r.output
    assert "slower than" in r.output and "torch fp32 on cpu, 2 frames at 64 px" in r.output
    r = _bench(*args, "--baseline", str(_baseline(tmp_path, data, 0.01)), "--max-regression", "20", "--json")
    assert r.exit_code == 0, r.output
    b = json.loads(r.stdout)["baseline"]
    assert len(b["compared"]) == 1 and b["regressions"] == []


def test_baseline_without_a_match_or_unreadable_exits_2(torch_run, tmp_path, weights_args):
    data, _ = torch_run
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"entries": [dict(e, size=512) for e in data["entries"]]}))
    args = ["--backend", "torch", "--frames", "2", *TINY, *weights_args]
    r = _bench(*args, "--baseline", str(p))
    assert r.exit_code == 2 and "no entry matching" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = _bench(*args, "--baseline", str(bad))
    assert r.exit_code == 2 and "not JSON" in r.output


def test_compare_to_baseline_threshold():
    e = {"backend": "torch", "device": "cpu", "precision": "fp32", "frames": 7, "size": 512}
    base = [dict(e, images_per_s=1.0)]
    assert compare_to_baseline([dict(e, images_per_s=0.91)], base, 10)["regressions"] == []
    (r,) = compare_to_baseline([dict(e, images_per_s=0.89)], base, 10)["regressions"]
    assert r["change_pct"] == pytest.approx(-11.0)
    other = dict(e, frames=2, images_per_s=0.1)
    assert compare_to_baseline([other], base, 10) == {"max_regression_pct": 10, "compared": [], "regressions": []}
