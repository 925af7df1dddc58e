"""Every place that looks for our models goes through ``focusstack.config.model_dir`` /
``models_dir`` (the package data), never a checkout's ``models/`` folder (issue 18)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from focusstack import config
from focusstack.refinement import models as refinement_models

ROOT = Path(__file__).resolve().parents[1]


def _load(script: str):
    path = ROOT / "benchmarks" / script
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refinement_default_dir_is_config_model_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "models_dir", lambda: tmp_path / "shipped")
    for kind, env in (("fsb", config.FSB_DIR_ENV), ("keb", config.KEB_DIR_ENV)):
        monkeypatch.delenv(env, raising=False)
        assert refinement_models.default_dir(kind) == tmp_path / "shipped" / kind
        monkeypatch.setenv(env, str(tmp_path / f"my_{kind}"))
        assert refinement_models.default_dir(kind) == tmp_path / f"my_{kind}"


def test_fuse_4k_uses_the_shipped_fusion_model(monkeypatch, tmp_path):
    bench = _load("fuse_4k.py")
    shipped = tmp_path / "pkg_models"
    (shipped / "fusion").mkdir(parents=True)
    (shipped / "fusion" / config.MODEL_WEIGHTS_FILE).write_bytes(b"stand-in")
    monkeypatch.setattr(bench, "models_dir", lambda: shipped)
    assert bench.fusion_dir(tmp_path / "work") == (shipped / "fusion", True)
    assert not (tmp_path / "work").exists()  # no random network was made


def test_eval_fusion_defaults_to_the_shipped_fusion_model():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_fusion.py"), "--help"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert str(config.models_dir() / "fusion") in r.stdout
