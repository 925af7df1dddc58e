"""TAEF2 round-trip PSNR on shared/data/backgrounds/bsds68, fp32 and bf16 (proves the weights load).

Usage: python benchmarks/vae_roundtrip.py [--limit N]   (prints a JSON summary)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from focusstack.backends.torch_backend import TorchBackend
from focusstack.metrics import psnr
from focusstack.networks.weights import load_vae, resolve_vae_dir

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/backgrounds/bsds68/original")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    files = sorted(args.data.glob("*.jpg"))[: args.limit or None]
    vae = load_vae(resolve_vae_dir())  # --vae-weights order: $FOCUSSTACK_VAE_DIR, cache, download
    out = {"images": len(files)}
    outputs = {}
    for prec in ("fp32", "bf16"):
        b = TorchBackend(vae, None, device="cpu", precision=prec)
        scores, t0 = [], time.perf_counter()
        outputs[prec] = []
        for f in files:
            a = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255
            a = a[: a.shape[0] // 8 * 8, : a.shape[1] // 8 * 8]
            y = b.decode(b.encode(a.transpose(2, 0, 1)[None].copy()))[0].transpose(1, 2, 0)
            outputs[prec].append(y)
            scores.append(psnr(y, a))
        out[prec] = {"mean_psnr_db": round(float(np.mean(scores)), 2), "min_db": round(float(np.min(scores)), 2),
                     "max_db": round(float(np.max(scores)), 2), "seconds": round(time.perf_counter() - t0, 1)}
    d = np.concatenate([np.abs(x - y).ravel() for x, y in zip(outputs["fp32"], outputs["bf16"])]) * 255
    out["fp32_vs_bf16_abs_diff_255"] = {"mean": round(float(d.mean()), 3), "p99.9": round(float(np.quantile(d, 0.999)), 2), "max": round(float(d.max()), 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
