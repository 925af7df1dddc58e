"""Foreground-mask mIoU on BetaFusion (real near/far pairs, hand-made mask of A's foreground).

    .venv/bin/python benchmarks/betafusion_mask.py [--folder /work/shared/data/pairs/betafusion] [--fsb DIR] [--json out.json]

mIoU = mean of foreground and background IoU of the mask thresholded at 0.5 (the metric of
docs/decision.md, where the decision map alone scores 0.826). Rows: the decision engine's map,
the FSB probability (no boundary refinement), and the FSB mask after the guided-filter boundary
refinement that ``refine-tr`` uses. The FSB is given A as the near frame (the mask metric);
the near/far ordering accuracy of ``refine-tr`` (both argument orders) is reported separately.
BetaFusion is a test set only: nothing is trained or tuned on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from focusstack.maps.decision import decision_steps
from focusstack.refinement.models import load_fsb, weights_present
from focusstack.refinement.ordering import order_frames
from focusstack.refinement.refine import RefineConfig, fsb_mask, refine_boundary


def miou(p: np.ndarray, g: np.ndarray) -> float:
    return 0.5 * float((p & g).sum() / max(1, (p | g).sum()) + (~p & ~g).sum() / max(1, (~p | ~g).sum()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=Path("/work/shared/data/pairs/betafusion"))
    ap.add_argument("--fsb", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = weights_present(args.fsb, "fsb")
    model = load_fsb(folder).model if folder else None
    cfg = RefineConfig()
    rows, order_ok = [], 0
    ids = sorted({p.name.split("-")[1] for p in args.folder.glob("BetaFusion-*-M.png")})
    for i in ids:
        a, b = (np.asarray(Image.open(args.folder / f"BetaFusion-{i}-{s}.jpg").convert("RGB"), np.float32) / 255.0 for s in "AB")
        gt = np.asarray(Image.open(args.folder / f"BetaFusion-{i}-M.png").convert("L")) > 127
        order_ok += int(order_frames([a, b]).order == (0, 1)) + int(order_frames([b, a]).order == (1, 0))
        row = {"pair": i, "decision": miou(decision_steps([a, b]).labels == 0, gt)}
        if model is not None:
            prob = fsb_mask(model, a, b, cfg.work_size)
            radius = max(2, int(round(cfg.guide_radius * min(a.shape[:2]))))
            row["fsb_raw"] = miou(prob > 0.5, gt)
            row["fsb"] = miou(refine_boundary(prob, a, radius, cfg.guide_eps) > 0.5, gt)
        rows.append(row)
    out = {
        "pairs": len(rows),
        "fsb_weights": str(folder) if folder else None,
        "ordering_accuracy": order_ok / max(1, 2 * len(rows)),
        "mean": {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k != "pair"},
        "per_pair": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
