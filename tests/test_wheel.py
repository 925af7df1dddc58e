"""The wheel works by itself (issue 18): built from the sources, installed into a fresh venv and
run from another folder, it finds its shipped models, its man page, docs and completions, and
fuses like the checkout.

The fresh venv has no packages of its own besides focusstack: a ``.pth`` line puts this test
venv's site-packages (torch, numpy, ...) after its own. (``venv --system-site-packages`` made
from a venv's python would see the *base* interpreter's packages, not this venv's.) A plain
path line in a ``.pth`` does not run that folder's own ``.pth`` files, so the checkout's
editable install cannot shadow the installed wheel; a test checks where focusstack came from.
About 5 s to build and install, plus two fuses of a 160 x 128 stack per install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from (the sdist's content minus tests and scripts).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "focusstack", "man", "completions", "docs")
MODEL_FILES = ("model.safetensors", "config.json", "SHA256SUMS")
#: Wheel size budget: PyPI refuses files over 100 MB by default; the models are ~24 MB.
MAX_WHEEL_MB = 60


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user: no model-folder overrides, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FOCUSSTACK_FUSION_DIR", "FOCUSSTACK_FSB_DIR", "FOCUSSTACK_KEB_DIR")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="the dev extra installs setuptools (wheel built without isolation)")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = REPO / name
        assert p.exists(), f"{p} is missing: the wheel is built from it"
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q", "--no-deps",
          "--no-build-isolation", "--no-index", "-w", str(dist), str(src)], cwd=src)
    (whl,) = dist.glob("focusstack-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root)
    py = root / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root).stdout.strip())
    # install first, then add the dependencies: pip must not see this venv's focusstack (the
    # checkout's editable install) as already installed, nor ever touch it
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(py), "install", "-q",
          "--no-deps", "--no-index", str(wheel)], cwd=root, env=_clean_env())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "_focusstack_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return root


@pytest.fixture(scope="module")
def tiny_stack(tmp_path_factory) -> Path:
    """Three 160 x 128 frames, each sharp in one third of a seeded texture (deterministic)."""
    import cv2

    d = tmp_path_factory.mktemp("stack") / "tiny"
    d.mkdir()
    rng = np.random.default_rng(0)
    h, w = 128, 160
    base = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.0)
    base = (base - base.min()) / (base.max() - base.min())
    blurred = cv2.GaussianBlur(base, (0, 0), 3.0)
    for k in range(3):
        f = blurred.copy()
        f[:, k * w // 3:(k + 1) * w // 3] = base[:, k * w // 3:(k + 1) * w // 3]
        cv2.imwrite(str(d / f"f{k}.png"), (f * 255 + 0.5).astype(np.uint8))
    return d


def _fuse_both(venv: Path, stack: Path, tmp_path: Path, *extra: str, env: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ``stack`` with the installed wheel (from an unrelated folder) and with the checkout."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run([str(venv / "bin" / "focusstack"), "fuse", str(stack), "-o", "out.tif", *extra], cwd=elsewhere, env=env)
    _run([sys.executable, "-m", "focusstack", "fuse", str(stack), "-o", str(tmp_path / "checkout.tif"), *extra],
         cwd=REPO, env=env)
    return tifffile.imread(elsewhere / "out.tif"), tifffile.imread(tmp_path / "checkout.tif")


def _max_diff_255(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = 255.0 / np.iinfo(a.dtype).max
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() * scale)


def test_wheel_holds_models_man_page_docs_and_completions(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("fusion", "fsb", "keb"):
        for f in MODEL_FILES:
            assert f"focusstack/models/{kind}/{f}" in names, f"{kind}/{f} is not in the wheel"
    version = wheel.name.split("-")[1]
    data = f"focusstack-{version}.data/data/"
    for f in ("share/man/man1/focusstack.1", "share/doc/focusstack/README.md", "share/doc/focusstack/LICENSE",
              "share/doc/focusstack/docs/decision.md", "share/bash-completion/completions/focusstack.bash",
              "share/zsh/site-functions/_focusstack", "share/fish/vendor_completions.d/focusstack.fish"):
        assert data + f in names, f"{f} is not in the wheel's data"
    # the docs keep their relative links: every docs/*.md of the checkout is there
    for md in (REPO / "docs").glob("*.md"):
        assert f"{data}share/doc/focusstack/docs/{md.name}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < MAX_WHEEL_MB, f"the wheel is {size_mb:.1f} MB, expected < {MAX_WHEEL_MB} MB"


def test_installed_package_is_the_wheel_and_finds_its_models(venv, tmp_path):
    code = (
        "import focusstack, json\n"
        "from focusstack.config import model_dir\n"
        "from focusstack.networks.weights import default_fusion_dir, load_fusion\n"
        "from focusstack.refinement.models import load_fsb, load_keb, weights_present\n"
        "dirs = {k: str(model_dir(k)) for k in ('fusion', 'fsb', 'keb')}\n"
        "loaded = {'fusion': str(load_fusion().folder), 'fsb': str(load_fsb().folder), 'keb': str(load_keb().folder)}\n"
        "print(json.dumps({'file': focusstack.__file__, 'dirs': dirs, 'loaded': loaded,\n"
        "                  'present': [str(weights_present(None, k)) for k in ('fsb', 'keb')],\n"
        "                  'fusion_default': str(default_fusion_dir())}))\n"
    )
    import json

    out = json.loads(_run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_clean_env()).stdout)
    site = str(venv.resolve())
    assert out["file"].startswith(site), f"focusstack came from {out['file']}, expected the venv {site}"
    for kind in ("fusion", "fsb", "keb"):
        assert out["dirs"][kind].startswith(site) and out["dirs"][kind].endswith(f"focusstack/models/{kind}")
        assert out["loaded"][kind] == out["dirs"][kind]
    assert out["fusion_default"] == out["dirs"]["fusion"]
    assert out["present"] == [out["dirs"]["fsb"], out["dirs"]["keb"]]


def test_env_overrides_beat_the_shipped_models(venv, tmp_path):
    env = _clean_env(FOCUSSTACK_FUSION_DIR=str(tmp_path / "f"), FOCUSSTACK_FSB_DIR=str(tmp_path / "s"),
                     FOCUSSTACK_KEB_DIR=str(tmp_path / "k"))
    code = "from focusstack.config import model_dir; print(*(model_dir(k) for k in ('fusion', 'fsb', 'keb')))"
    out = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert out == [str(tmp_path / "f"), str(tmp_path / "s"), str(tmp_path / "k")]


def test_installed_default_fuse_from_another_folder_matches_the_checkout(venv, tiny_stack, tmp_path):
    wheel_out, checkout_out = _fuse_both(venv, tiny_stack, tmp_path, env=_clean_env())
    assert wheel_out.shape == (128, 160, 3)
    assert _max_diff_255(wheel_out, checkout_out) <= 1.0
    # the fused image takes each third from its sharp frame: not a copy of any one frame
    import cv2

    frames = [cv2.imread(str(tiny_stack / f"f{k}.png"))[..., ::-1] for k in range(3)]
    assert all(np.abs(wheel_out.astype(int) - f).mean() > 1.0 for f in frames)


def test_installed_hybrid_uses_the_shipped_models(venv, tiny_stack, tmp_path, vae_dir):
    wheel_out, checkout_out = _fuse_both(venv, tiny_stack, tmp_path, "--engine", "hybrid",
                                         env=_clean_env(FOCUSSTACK_VAE_DIR=str(vae_dir)))
    assert _max_diff_255(wheel_out, checkout_out) <= 1.0


def test_installed_docs_command_points_into_the_venv(venv, tmp_path):
    import json

    r = _run([str(venv / "bin" / "focusstack"), "docs", "--json"], cwd=tmp_path, env=_clean_env())
    paths = json.loads(r.stdout)
    prefix = venv.resolve()
    for key, p in paths.items():
        assert p is not None, f"{key} not found after install"
        assert Path(p).resolve().is_relative_to(prefix), f"{key}: {p} is outside {prefix}"
        assert Path(p).exists()
    assert Path(paths["man"]).read_text() == (REPO / "man" / "focusstack.1").read_text()
    if shutil.which("man"):
        # man finds the page from PATH (venv/bin -> venv/share/man), as a user's shell would
        env = _clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        env.pop("MANPATH", None)
        found = subprocess.run(["man", "-w", "focusstack"], env=env, capture_output=True, text=True)
        if found.returncode == 0:
            assert Path(found.stdout.strip()).resolve() == Path(paths["man"]).resolve()


def test_missing_taef2_error_names_the_url_to_fetch_by_hand(venv, tiny_stack, tmp_path):
    env = _clean_env(FOCUSSTACK_CACHE_DIR=str(tmp_path / "cache"), FOCUSSTACK_VAE_URL="http://127.0.0.1:9/")
    env.pop("FOCUSSTACK_VAE_DIR", None)
    r = subprocess.run([str(venv / "bin" / "focusstack"), "fuse", str(tiny_stack), "-o", "o.tif", "--engine", "vaeedof"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "http://127.0.0.1:9/taef2_encoder.pth" in r.stderr, r.stderr
