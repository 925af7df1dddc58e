"""`fuse --batch --ray` (issue 18): the stacks of a batch as Ray tasks. Same bytes as the local
batch, resume, per-stack lines and --json alike; without the `ray` extra a clear error (exit 1)
before any work. Tests that need Ray skip when it is not installed (CI does not install it)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.config import AlignConfig, FuseConfig
from focusstack.errors import EXIT_FAILURE, BatchError
from focusstack.jobs.batch import fuse_batch

runner = CliRunner()
CONFIG = FuseConfig(align=AlignConfig(enabled=False), show_progress=False)


def _focus_stack(folder, n=3, size=(48, 64), seed=0):
    """Frame k is sharp in the k-th vertical band and blurred elsewhere."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    h, w = size
    sharp = rng.random((h, w, 3)).astype(np.float32)
    blur = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    for k, band in enumerate(np.array_split(np.arange(w), n)):
        img = blur.copy()
        img[:, band] = sharp[:, band]
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / f"f{k + 1}.png")


def _root(tmp_path):
    root = tmp_path / "root"
    _focus_stack(root / "a")
    _focus_stack(root / "b", seed=1)
    _focus_stack(root / "c_bad", seed=2)
    (root / "c_bad" / "f2.png").write_text("broken")
    return root


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _strip(fused: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k not in ("timings_s", "peak_memory_mb")} for d in fused]


def test_ray_batch_matches_local_bytes_and_resumes(tmp_path, local_ray):
    root = _root(tmp_path)
    with pytest.raises(BatchError) as local:
        fuse_batch(root, tmp_path / "local", CONFIG)
    events = []
    with pytest.raises(BatchError) as remote:
        fuse_batch(root, tmp_path / "ray", CONFIG, ray=True, on_stack=events.append)
    lr, rr = local.value.result, remote.value.result
    for name in ("a", "b"):
        assert (tmp_path / "ray" / f"{name}.tif").read_bytes() == (tmp_path / "local" / f"{name}.tif").read_bytes()
    assert sorted((e.index, e.name, e.status) for e in events) == [(1, "a", "wrote"), (2, "b", "wrote"),
                                                                     (3, "c_bad", "failed")]
    # the summary in stack order, the same per-stack results but for the folder and the timings
    as_local = json.loads(json.dumps(_strip(rr.fused)).replace(str(tmp_path / "ray"), str(tmp_path / "local")))
    assert as_local == _strip(lr.fused) and [d["output"].rsplit("/", 1)[-1] for d in rr.fused] == ["a.tif", "b.tif"]
    assert [f["message"] for f in rr.failed] == [f["message"] for f in lr.failed]
    assert rr.failed[0]["error"] == lr.failed[0]["error"]

    # a rerun through the CLI skips both finished stacks and fails the bad one again
    res = runner.invoke(app, ["fuse", "--batch", str(root), "-o", str(tmp_path / "ray"), "--no-align", "--ray",
                              "--json", "-q"])
    assert res.exit_code == EXIT_FAILURE, res.output
    summary = json.loads(res.stdout)
    assert summary["skipped"] == [str(tmp_path / "ray" / "a.tif"), str(tmp_path / "ray" / "b.tif")]
    assert summary["fused"] == [] and [f["stack"] for f in summary["failed"]] == [str(root / "c_bad")]
    assert "[3/3] c_bad: failed:" in res.stderr


def test_missing_ray_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    root = _root(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["fuse", "--batch", str(root), "-o", str(out), "--ray-address", "auto"])
    assert res.exit_code == EXIT_FAILURE, res.output
    assert "missing package" in res.stderr
    assert "--ray needs the optional `ray` package" in res.stderr
    assert "expected `import ray` to work, got ModuleNotFoundError" in res.stderr
    assert "fix: pip install 'focusstack[ray]'" in res.stderr
    assert not out.exists()


def test_ray_needs_batch_and_help_imports_neither_ray_nor_torch(tmp_path):
    res = runner.invoke(app, ["fuse", str(tmp_path), "-o", str(tmp_path / "x.tif"), "--ray"])
    assert res.exit_code == 2 and "--ray is a --batch option" in res.stderr
    code = ("import sys; from typer.testing import CliRunner; from focusstack.cli.app import app; "
            "r = CliRunner().invoke(app, ['fuse', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--ray-address' in r.output, r.output; "
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
