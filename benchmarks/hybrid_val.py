"""Hybrid against the vaeedof and decision engines on a rendered validation set (issue: hybrid).

    python benchmarks/hybrid_val.py DATASET [--split val] [--limit N] [--band 16] [--json FILE]

DATASET is a `render-dataset` folder; use one with strong blur and occlusion whose validation
sources were not used in training, e.g.

    focusstack render-dataset /tmp/hard512 --samples 200 --resolution 512 --seed 777 \\
        --subjects ../shared/data/subjects --backgrounds ../shared/data/backgrounds \\
        --fstop-min 1.4 --fstop-max 4 --frames-min 2 --frames-max 6

(the train/val split of sources is fixed by a hash of each source's name, so validation
sources are the same in every dataset made with the same --val-fraction, and models/fusion was
trained on training sources only).

For every sample it fuses the frames with the three engines (same loaded networks) and scores
PSNR against gt.png over the whole image and in the band of --band px around subject edges
(edges of the mattes, matte > 0.5). Prints per-sample lines to stderr and a JSON summary of
means to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def band_mask(sample: Path, shape: tuple[int, int], width: int) -> np.ndarray:
    from focusstack.io import read_image

    edge = np.zeros(shape, bool)
    for p in sorted(sample.glob("matte_*.png")):
        m = read_image(p).pixels[..., 0] > 0.5
        mu = m.astype(np.uint8)
        k3 = np.ones((3, 3), np.uint8)
        edge |= cv2.dilate(mu, k3) != cv2.erode(mu, k3)
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2)
    return cv2.dilate(edge.astype(np.uint8), ker).astype(bool)


def psnr_in(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b) ** 2
    mse = d.mean() if mask is None else d[mask].mean()
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--band", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--engines", default="decision,vaeedof,hybrid", help="comma list of engines to score")
    args = ap.parse_args()

    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.engines.decision import DecisionEngine
    from focusstack.engines.hybrid import HybridEngine
    from focusstack.engines.vaeedof import VAEEDOFEngine
    from focusstack.io import read_image
    from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir
    from focusstack.refinement.models import load_fsb, load_keb, weights_present

    backend = TorchBackend(load_vae(resolve_vae_dir(None)), load_fusion(None).model, device="cpu", precision="fp32")
    vae_engine = VAEEDOFEngine(backend)
    fsb = load_fsb().model if weights_present(None, "fsb") else None
    keb = load_keb().model if weights_present(None, "keb") else None
    engines = {"decision": DecisionEngine(), "vaeedof": vae_engine, "hybrid": HybridEngine(vae_engine, fsb=fsb, keb=keb)}
    engines = {k: v for k, v in engines.items() if k in args.engines.split(",")}

    manifest = json.loads((args.dataset / "manifest.json").read_text())
    samples = [s for s in manifest["samples"] if s["split"] == args.split]
    if args.limit:
        samples = samples[: args.limit]
    rows = []
    for s in samples:
        d = args.dataset / s["path"]
        frames = [read_image(p).pixels for p in sorted(d.glob("frame_*.png"))]
        gt = read_image(d / "gt.png").pixels
        band = band_mask(d, gt.shape[:2], args.band)
        row = {"id": s["id"], "frames": len(frames)}
        for name, eng in engines.items():
            t = time.perf_counter()
            out = eng.fuse(frames)
            row[f"{name}_s"] = round(time.perf_counter() - t, 2)
            row[f"{name}_psnr"] = round(psnr_in(out, gt), 3)
            row[f"{name}_band"] = round(psnr_in(out, gt, band), 3) if band.any() else None
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    keys = [k for k in rows[0] if k not in ("id",)]
    summary = {"dataset": str(args.dataset), "split": args.split, "samples": len(rows), "band_px": args.band,
               "fsb": fsb is not None, "keb": keb is not None,
               "mean": {k: round(float(np.mean([r[k] for r in rows if r[k] is not None])), 3) for k in keys}}
    text = json.dumps({"summary": summary, "rows": rows}, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
