"""Time `focusstack eval` over 24 images of 768x512 with every offline metric.

Target (issue #7): under 2 minutes on the project's 2-core CPU.

The images come from the real BetaFusion pairs in ../shared/data/pairs/betafusion (384x256,
upscaled 2x to 768x512; pairs are reused with flips to reach 24). Per image: sources A and B,
GT = the hand-made mask composite (A where the mask is set, else B), a prediction (the mean of
A and B plus seeded noise) and the GT mask. Everything is written to a temporary folder outside
the repository. The command timed is

    focusstack eval PRED --gt GT --sources SRC --masks MASKS --json --threads T

i.e. every metric that needs no downloaded weights: HaarPSI, IW-SSIM, MDSI, MSE, MS-SSIM,
MS-GMSD, PSNR, SSIM, Q^MI, Q^AB/F, Q^Y and mIoU (LPIPS, DISTS and PieAPP are reported
unavailable unless their weights are in the torch hub cache, in which case they run too).
With --plots the difficulty analysis is timed as well (a second run).

Usage:  nice -n 10 .venv/bin/python benchmarks/eval_speed.py [--threads 1] [--plots] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCUSSTACK_SHARED", REPO.parent / "shared"))
N_IMAGES, WIDTH, HEIGHT = 24, 768, 512
TARGET_S = 120.0


def _load(p: Path, size: tuple[int, int] | None = None, mode: str = "RGB") -> np.ndarray:
    im = Image.open(p).convert(mode)
    if size is not None and im.size != size:
        im = im.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(im).astype(np.float32) / 255.0


def _save(p: Path, x: np.ndarray) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)).save(p, compress_level=1)


def make_data(root: Path) -> None:
    pairs = SHARED / "data" / "pairs" / "betafusion"
    if not pairs.is_dir():
        sys.exit(f"{pairs} not found: set FOCUSSTACK_SHARED")
    rng = np.random.default_rng(0)
    size = (WIDTH, HEIGHT)
    for i in range(N_IMAGES):
        s = f"BetaFusion-{i % 10 + 1:02d}"
        a = _load(pairs / f"{s}-A.jpg", size)
        b = _load(pairs / f"{s}-B.jpg", size)
        m = _load(pairs / f"{s}-M.png", size, "L") >= 0.5
        flip = i // 10  # 0: as is, 1: left-right, 2: up-down
        if flip:
            axis = 1 if flip == 1 else 0
            a, b, m = np.flip(a, axis), np.flip(b, axis), np.flip(m, axis)
        stem = f"img{i:02d}"
        gt = np.where(m[..., None], a, b)
        pred = 0.5 * (a + b) + rng.normal(0, 0.01, a.shape).astype(np.float32)
        _save(root / "src" / stem / "a.png", a)
        _save(root / "src" / stem / "b.png", b)
        _save(root / "gt" / f"{stem}.png", gt)
        _save(root / "pred" / f"{stem}.png", pred)
        _save(root / "masks" / f"{stem}.png", m.astype(np.float32))


def _child_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(root: Path, threads: int, extra: list[str]) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the eval process, its JSON)."""
    exe = [sys.executable, "-m", "focusstack"]
    cmd = [*exe, "eval", str(root / "pred"), "--gt", str(root / "gt"), "--sources", str(root / "src"),
           "--masks", str(root / "masks"), "--json", "--quiet", "--threads", str(threads), *extra]
    c0, t0 = _child_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall, cpu = time.perf_counter() - t0, _child_cpu_s() - c0
    if proc.returncode != 0:
        sys.exit(f"eval failed ({proc.returncode}):\n{proc.stderr}")
    return wall, cpu, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for eval (1 on a shared 2-core machine)")
    ap.add_argument("--plots", action="store_true", help="also time a run with the difficulty plots")
    ap.add_argument("--keep", type=Path, default=None, help="keep the generated images in this folder")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fs-eval-bench-"))
    try:
        t0 = time.perf_counter()
        if not (root / "pred").is_dir():
            make_data(root)
        print(f"data: {N_IMAGES} images {WIDTH}x{HEIGHT} in {root} ({time.perf_counter() - t0:.1f} s to make)", file=sys.stderr)
        load0 = os.getloadavg()
        wall, cpu, doc = run(root, args.threads, [])
        load1 = os.getloadavg()
        metrics = [k for k, v in doc["summary"]["pred"].items() if v["mean"] is not None]
        report = {
            "images": len(doc["images"]),
            "size": [WIDTH, HEIGHT],
            "threads": args.threads,
            "metrics_computed": metrics,
            "metrics_unavailable": sorted(doc["unavailable"]),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "inside_eval_s": doc["seconds"],
            "s_per_image": round(wall / N_IMAGES, 2),
            "target_s": TARGET_S,
            "within_target": wall < TARGET_S,
            "loadavg_before": [round(x, 2) for x in load0],
            "loadavg_after": [round(x, 2) for x in load1],
            "cpus": os.cpu_count(),
        }
        if args.plots:
            plots = root / "plots"
            shutil.rmtree(plots, ignore_errors=True)
            wall_p, cpu_p, _ = run(root, args.threads, ["--plots", str(plots)])
            report["with_plots_wall_s"] = round(wall_p, 1)
            report["with_plots_cpu_s"] = round(cpu_p, 1)
        print(json.dumps(report, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
