"""Score a trained Fusion U-Net on the validation split of a rendered dataset.

    python benchmarks/eval_fusion.py --data DATASET --run RUN [--model focusstack/models/fusion] [--limit N] [--write DIR]

Uses the latents cached by `focusstack train fusion` in RUN/latents (encoding the missing ones),
fuses each sample's full 512 px latent in one piece, decodes, and compares with the GT image:
PSNR and SSIM, the VAE round-trip ceiling (GT encoded then decoded), and two baselines, the mean
of the frames and the best single frame. Prints JSON. ``--write DIR`` also saves 16-bit PNGs of
the four (DIR/fusion, DIR/vae_ceiling, DIR/mean_of_frames, DIR/best_frame) for every metric:

    focusstack eval DIR/fusion --method mean=DIR/mean_of_frames --method best=DIR/best_frame \
        --method ceiling=DIR/vae_ceiling --gt DATASET --sources DATASET
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from focusstack.backends.torch_backend import TorchBackend, cpu_has_fast_bf16
from focusstack.config import models_dir
from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir
from focusstack.training.data import cache_latents, list_samples
from focusstack.training.fusion import evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=models_dir() / "fusion", help="model folder (default: the shipped one, %(default)s)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--write", type=Path, default=None, help="save the fused, ceiling and baseline images here")
    args = ap.parse_args()
    vae = load_vae(resolve_vae_dir())
    backend = TorchBackend(vae, None, device="cpu", precision="bf16" if cpu_has_fast_bf16() else "fp32")
    refs = list_samples(args.data, "val")[: args.limit or None]
    files = cache_latents(refs, args.run / "latents", backend)
    model = load_fusion(args.model).model
    metrics = evaluate(model, backend, refs, files, torch.float32, write=args.write)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))


if __name__ == "__main__":
    main()
