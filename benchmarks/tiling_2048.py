"""Tiled against one-piece fusion (issue: fuse pipeline, "Tiling").

    python benchmarks/tiling_2048.py [--size 2048] [--frames 4] [--tile 512] [--workdir DIR]

Renders one sample of ``--size`` px with ``render-dataset`` (real subjects and backgrounds from
``$FOCUSSTACK_SHARED/data`` when present, else procedural), fuses its frames with the VAEEDOF
engine twice, with ``--tile`` px patches and in one piece (one patch covering the canvas), and
prints the PSNR between the two and the largest difference. Then fuses a flat-colour stack of
the same size with ``--tile`` px patches and prints its largest deviation from its median colour.
Targets: 40 dB or more, and a flat-field deviation of at most 1/255.

Uses the shipped Fusion U-Net (models/fusion); fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.config import TileConfig
    from focusstack.engines.vaeedof import VAEEDOFEngine, canvas_tiles
    from focusstack.io import read_image
    from focusstack.metrics import psnr
    from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir
    from focusstack.rendering import RenderConfig, render_dataset

    work = args.workdir or Path(tempfile.mkdtemp(prefix="fs-tiling-"))
    shared = Path(os.environ.get("FOCUSSTACK_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    subjects, backgrounds = shared / "data" / "subjects", shared / "data" / "backgrounds"
    render_dataset(work / "data", RenderConfig(
        samples=1, resolution=args.size, seed=2048, frames_min=args.frames, frames_max=args.frames,
        fstop_min=1.4, fstop_max=4.0, val_fraction=0.0,
        subjects=subjects if subjects.is_dir() else None,
        backgrounds=backgrounds if backgrounds.is_dir() else None, show_progress=False))
    sample = next((work / "data" / "samples").iterdir())
    frames = [read_image(p).pixels for p in sorted(sample.glob("frame_*.png"))]

    backend = TorchBackend(load_vae(resolve_vae_dir(None)), load_fusion(None).model, device="cpu", precision="fp32")
    tiles = TileConfig(tile=args.tile)
    ch, cw, _ = canvas_tiles(args.size, args.size, tiles)
    whole_cfg = TileConfig(tile=max(ch, cw))
    t = time.perf_counter()
    tiled = VAEEDOFEngine(backend, tiles).fuse(frames)
    t_tiled = time.perf_counter() - t
    t = time.perf_counter()
    whole = VAEEDOFEngine(backend, whole_cfg).fuse(frames)
    t_whole = time.perf_counter() - t

    flat = [np.full((args.size, args.size, 3), (0.55, 0.4, 0.25), np.float32)] * 3
    out = VAEEDOFEngine(backend, tiles).fuse(flat)
    flat_dev = float(np.abs(out - np.median(out.reshape(-1, 3), axis=0)).max())

    result = {
        "size": args.size,
        "frames": len(frames),
        "tile": args.tile,
        "psnr_tiled_vs_whole_db": round(psnr(tiled, whole), 2),
        "max_abs_diff_255": round(float(np.abs(tiled - whole).max()) * 255, 3),
        "flat_max_deviation_255": round(flat_dev * 255, 3),
        "seconds_tiled": round(t_tiled, 1),
        "seconds_whole": round(t_whole, 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
