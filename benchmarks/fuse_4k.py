"""Time and peak memory of fusing a 7-frame 4096x4096 16-bit TIFF stack on this machine.

Target (issue: fuse pipeline): 120 s or less and 4 GB or less on the 2-core CPU.

    python benchmarks/fuse_4k.py [--size 4096] [--frames 7] [--precision auto] [--workdir DIR]

It writes a synthetic 16-bit stack (smooth gradients plus fine texture) once, then runs
`focusstack fuse` in a child process under /usr/bin/time -v, so the peak RSS is the whole
command's. The Fusion U-Net is the shipped one (focusstack/models/fusion) when present; speed does not
depend on the weights, so without it a seeded random network of the default architecture is
saved to a temporary folder and marked as such in the output (never for real use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from focusstack.config import models_dir


def make_stack(folder: Path, size: int, frames: int) -> None:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([x, y, 1 - x * y], -1)
    for i in range(frames):
        p = folder / f"frame_{i:02d}.tif"
        if p.is_file():
            continue
        tex = rng.random((size // 8, size // 8, 3), dtype=np.float32)
        tex = np.repeat(np.repeat(tex, 8, 0), 8, 1)
        img = np.clip(0.7 * base + 0.3 * tex, 0, 1)
        tifffile.imwrite(p, (img * 65535).astype(np.uint16))


def fusion_dir(tmp: Path) -> tuple[Path, bool]:
    shipped = models_dir() / "fusion"  # package data, in a checkout as in an installed wheel
    if (shipped / "model.safetensors").is_file():
        return shipped, True
    import torch

    from focusstack.networks.fusion_unet import FusionUNet
    from focusstack.networks.weights import save_model_dir

    torch.manual_seed(0)
    m = FusionUNet()
    save_model_dir(m, m.cfg.to_dict(), tmp / "random_fusion", metadata={"trained_steps": 1, "note": "benchmark only: random"})
    return tmp / "random_fusion", False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--frames", type=int, default=7)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--engine", default="vaeedof", help="vaeedof (the time target) or any other engine")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "focusstack-bench")
    args = ap.parse_args()
    stack = args.workdir / f"stack_{args.size}_{args.frames}"
    make_stack(stack, args.size, args.frames)
    fdir, trained = fusion_dir(args.workdir)
    out = args.workdir / "fused.tif"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "focusstack", "fuse", str(stack), "-o", str(out), "--overwrite",
           "--precision", args.precision, "--tile", str(args.tile), "--fusion-weights", str(fdir), "--json", "-q",
           "--engine", args.engine, "--no-align"]  # synthetic frames: nothing to align
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"fuse failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    print(json.dumps({
        "size": args.size, "frames": args.frames, "tile": args.tile, "trained_weights": trained,
        "device": summary["device"], "precision": summary["precision"],
        "wall_s": round(wall, 1), "timings_s": summary["timings_s"],
        "peak_rss_gb": round(rss_kb / 1024 / 1024, 2),
        "targets": {"wall_s": 120, "peak_rss_gb": 4.0},
    }, indent=2))


if __name__ == "__main__":
    main()
