"""Transition-region refinement on a rendered 2-frame validation set: PSNR in a 16 px band
around the subject's edges (and over the whole image) before and after diffusion elimination.

    .venv/bin/python benchmarks/tr_band.py --data /work/data/tr/tr256 --n 100 [--json out.json]

Rows (each ``before -> after``, mean over samples, against the rendered all-in-focus GT):

* ``decision``: R_init = the decision engine's fusion, refined by the default pipeline.
* ``eq9``: R_init = Eq. 9 with the pipeline's mask (the paper's R_init), refined.
* ``init-decision``: the decision engine's output given as ``--init`` (far share estimated).
* ``init-laplacian``: a Laplacian-pyramid fusion given as ``--init``.
* ``oracle-eq9``: Eq. 9 with the GT matte and the renderer's sigma (the model's ceiling).

Also the near/far ordering accuracy (both argument orders) and the mask mIoU against the GT
matte. The mask and sigma come from models/fsb and models/keb when they exist (else the
fallbacks, as ``refine-tr`` does); the JSON says which.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from focusstack.maps.decision import compose, decision_steps
from focusstack.refinement.diffusion import initial_synthesis
from focusstack.refinement.laplacian import laplacian_fuse
from focusstack.refinement.ordering import order_frames
from focusstack.ops import linear_to_srgb, srgb_to_linear
from focusstack.refinement.models import load_refine_networks
from focusstack.refinement.refine import RefineConfig, refine_pair
from focusstack.refinement.diffusion import diffusion_component
from focusstack.training.tr_data import _read, list_tr_samples


def band_mask(matte: np.ndarray, width: int = 16) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``width`` px of the subject's edge (matte > 0.5)."""
    edge = cv2.morphologyEx((matte > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(edge, ker).astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, m: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b) ** 2
    if m is not None:
        d = d[m]
    return float(10 * np.log10(1.0 / max(d.mean(), 1e-12)))


def miou(p: np.ndarray, g: np.ndarray) -> float:
    return 0.5 * float((p & g).sum() / max(1, (p | g).sum()) + (~p & ~g).sum() / max(1, (~p | ~g).sum()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--mask-source", default="auto")
    ap.add_argument("--sigma-source", default="auto")
    ap.add_argument("--fsb", type=Path, help="FSB weights folder (default: models/fsb)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    cfg = RefineConfig(mask_source=args.mask_source, sigma_source=args.sigma_source, fsb_weights=args.fsb)
    fsb, keb, used = load_refine_networks(cfg)
    samples = [s for s in list_tr_samples(args.data, args.split)][: args.n]
    rows = {k: [] for k in ("decision", "eq9", "init-decision", "init-laplacian", "oracle-eq9")}
    order_ok, mious, sig_err, n = 0, [], [], 0
    t0 = time.perf_counter()
    for s in samples:
        near, far, matte = s.load()
        gt = _read(s.folder / "gt.png")
        band = band_mask(matte, args.width)
        if band.sum() < 50:
            continue
        n += 1
        order_ok += int(order_frames([near, far]).order == (0, 1)) + int(order_frames([far, near]).order == (1, 0))
        dw = decision_steps([near, far]).weights
        dec = compose([near, far], dw)
        lap = laplacian_fuse([near, far])
        res = {
            "decision": refine_pair(near, far, cfg, decision_weights=dw, fsb=fsb, keb=keb),
            "eq9": refine_pair(near, far, RefineConfig(**{**cfg.__dict__, "r_init": "eq9"}), decision_weights=dw, fsb=fsb, keb=keb),
            "init-decision": refine_pair(near, far, cfg, init=dec, decision_weights=dw, fsb=fsb, keb=keb),
            "init-laplacian": refine_pair(near, far, cfg, init=lap, decision_weights=dw, fsb=fsb, keb=keb),
        }
        mious.append(miou(res["decision"].mask > 0.5, matte > 0.5))
        sig_err.append(abs(res["decision"].sigma_px - s.sigma_far) / max(s.sigma_far, 1e-6))
        for k, r in res.items():
            rows[k].append([psnr(r.r_init, gt, band), psnr(r.refined, gt, band), psnr(r.r_init, gt), psnr(r.refined, gt)])
        r0 = initial_synthesis(near, far, matte)
        sd = diffusion_component(srgb_to_linear(near), srgb_to_linear(far), matte, s.sigma_far)
        ro = linear_to_srgb(srgb_to_linear(r0) - sd)
        rows["oracle-eq9"].append([psnr(r0, gt, band), psnr(ro, gt, band), psnr(r0, gt), psnr(ro, gt)])
    out = {
        "data": str(args.data), "split": args.split, "samples": n, "band_px": args.width,
        "weights": used, "mask_source": res["decision"].info["mask_source"] if n else None,
        "sigma_source": res["decision"].info["sigma_source"] if n else None,
        "ordering_accuracy": order_ok / max(1, 2 * n),
        "mask_miou_vs_gt_matte": float(np.mean(mious)) if mious else None,
        "sigma_mean_rel_error": float(np.mean(sig_err)) if sig_err else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": {},
    }
    for k, v in rows.items():
        a = np.array(v)
        if not len(a):
            continue
        m = a.mean(0)
        out["rows"][k] = {
            "band_before": round(m[0], 3), "band_after": round(m[1], 3), "band_gain": round(m[1] - m[0], 3),
            "whole_before": round(m[2], 3), "whole_after": round(m[3], 3), "whole_gain": round(m[3] - m[2], 3),
            "band_gain_median": round(float(np.median(a[:, 1] - a[:, 0])), 3),
            "samples_band_improved": round(float(np.mean(a[:, 1] > a[:, 0])), 3),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
