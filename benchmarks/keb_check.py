"""The paper's KEB check: blur clean images with a random Gaussian ``K_gt``, estimate ``K_pd``
from the blurred image, re-blur the clean image with ``K_pd`` and compare the two blurred
images (SSIM, PSNR). Paper: SSIM 0.957, PSNR 35.46 dB on DIV2K; target SSIM >= 0.95 and
PSNR >= 35 dB.

    .venv/bin/python benchmarks/keb_check.py --data /work/data/tr/tr256 [--n 100] [--json out.json]

Clean images: the all-in-focus ``gt.png`` of the rendered dataset's *validation* split (its
subjects and backgrounds are disjoint from the training split's) plus the validation
background photos listed in its manifest, centre-cropped to 256 px. ``sigma_gt`` is drawn
log-uniformly from [0.5, 6] px (seeded). The KEB sees ``(sharp = I_clear, blurred = I_1,
mask = 1)`` (see focusstack/networks/keb.py for why it takes the sharp view). The classical
least-squares estimator of ``refine-tr`` is scored beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from focusstack.metrics import psnr, ssim
from focusstack.refinement.features import keb_input
from focusstack.refinement.models import load_keb, weights_present
from focusstack.refinement.refine import classical_sigma
from focusstack.training.tr_data import _read, list_tr_samples


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(4 * sigma))
    return cv2.GaussianBlur(img, (2 * r + 1, 2 * r + 1), sigma, borderType=cv2.BORDER_REFLECT_101)


def clean_set(data: Path, n: int, shared: Path) -> list[np.ndarray]:
    imgs = [_read(s.folder / "gt.png") for s in list_tr_samples(data, "val")[:n]]
    man = json.loads((data / "manifest.json").read_text())
    bg_root = Path(man["config"].get("backgrounds") or shared / "data" / "backgrounds")
    for rel in (man.get("sources", {}).get("backgrounds", {}) or {}).get("val", []):
        p = bg_root / rel
        if p.is_file():
            im = _read(p)
            h, w = im.shape[:2]
            c = min(h, w, 256)
            imgs.append(np.ascontiguousarray(im[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]))
    return imgs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--keb", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=Path("/work/shared"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = weights_present(args.keb, "keb")
    model = load_keb(folder).model if folder else None
    rng = np.random.default_rng(args.seed)
    rows = {"keb": [], "classical": []}
    sig = []
    for clean in clean_set(args.data, args.n, args.shared):
        s_gt = float(np.exp(rng.uniform(np.log(0.5), np.log(6.0))))
        i1 = blur(clean, s_gt)
        ests = {"classical": classical_sigma(clean, i1, np.ones(clean.shape[:2], np.float32))}
        if model is not None:
            with torch.inference_mode():
                ests["keb"] = float(model(torch.from_numpy(keb_input(clean, i1, np.ones(clean.shape[:2], np.float32), model.cfg.bank))[None])[0])
        for k, s_pd in ests.items():
            i2 = blur(clean, s_pd)
            rows[k].append((psnr(i1, i2), ssim(i1, i2), abs(s_pd - s_gt) / s_gt))
        sig.append(s_gt)
    out = {"images": len(sig), "sigma_gt_range": [round(min(sig), 3), round(max(sig), 3)], "keb_weights": str(folder) if folder else None}
    for k, v in rows.items():
        if v:
            a = np.array(v)
            fin = np.isfinite(a[:, 0])
            out[k] = {
                "psnr_mean": round(float(np.mean(np.minimum(a[:, 0], 100.0))), 3),
                "psnr_median": round(float(np.median(a[:, 0])), 3),
                "ssim_mean": round(float(a[:, 1].mean()), 4),
                "sigma_rel_error_mean": round(float(a[:, 2].mean()), 4),
                "finite": int(fin.sum()),
            }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
