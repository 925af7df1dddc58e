"""The FSB's training data and training run, end to end (the recipe of models/fsb).

    python scripts/fsb_recipe.py --shared ../shared --work WORK [--samples 1500] [--res 384]
        [--workers 15] [--minutes 6] [--device auto] [--skip-render] [--export DIR]

Renders three 2-frame (near/far) datasets into WORK with ``render-dataset``'s thin-lens engine,
then trains the FSB on their union (``focusstack train fsb --data A --data B --data C``):

* ``small``: the matted subjects (animals, people) at the default sizes (0.25-0.7 of the frame);
* ``large``: the same subjects at 0.3-1.0 of the frame (real pairs' foregrounds cover 25-75 %);
* ``occl``: occluders from :mod:`focusstack.rendering.occluders` (half-planes, bars, blobs,
  a third of them textureless) at 1.0-2.0 of the frame, so that they cross its edges.

The run folder is WORK/run or --run (it resumes: run the script again with --skip-render);
``--init models/fsb`` starts a new run from the shipped weights (the architecture is theirs). Rendering is
CPU work (--workers processes); training uses --device (a GPU if present with ``auto``) with
--workers batch-building processes.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time
from pathlib import Path

from focusstack.rendering.config import RenderConfig
from focusstack.rendering.dataset import render_dataset
from focusstack.rendering.occluders import make_occluders
from focusstack.training.fsb import TrainFSBConfig, train_fsb

#: (name, seed, subject scale range); the seeds differ from the earlier tr256 / tr256b sets.
SETS = (("small", 5101, (0.25, 0.7)), ("large", 5102, (0.3, 1.0)), ("occl", 5103, (1.0, 2.0)))


def log(msg: str) -> None:
    print(f"[fsb_recipe {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, required=True, help="folder holding data/subjects and data/backgrounds")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=1500, help="renders per dataset")
    ap.add_argument("--res", type=int, default=384)
    ap.add_argument("--occluders", type=int, default=300)
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--skip-render", action="store_true")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run", type=Path, help="run folder (default WORK/run)")
    ap.add_argument("--export", type=Path)
    ap.add_argument("--init", type=Path, help="warm start from an exported FSB (e.g. models/fsb) instead of random weights")
    args = ap.parse_args()
    subjects, backgrounds = args.shared / "data" / "subjects", args.shared / "data" / "backgrounds"
    occ = args.work / "occluders"
    data = []
    for name, seed, (smin, smax) in SETS:
        out = args.work / name
        data.append(out)
        if args.skip_render:
            continue
        if name == "occl" and not (occ / "occluders.json").is_file():
            t = time.perf_counter()
            make_occluders(occ, backgrounds, args.occluders, size=2 * args.res, seed=seed)
            log(f"{args.occluders} occluders in {time.perf_counter() - t:.0f} s")
        cfg = RenderConfig(
            samples=args.samples, resolution=args.res, seed=seed, subjects=occ if name == "occl" else subjects,
            backgrounds=backgrounds, frames_min=2, frames_max=2, fstop_min=1.4, fstop_max=5.6,
            subject_distance_min_m=1.0, subject_distance_max_m=4.0, subject_scale_min=smin, subject_scale_max=smax,
            workers=args.workers, show_progress=False,
        )
        r = render_dataset(out, cfg)
        log(f"{name}: {r['rendered']} rendered, {r['skipped']} kept, {r['seconds']:.0f} s")
    if args.minutes:  # a stuck run prints where every thread is
        faulthandler.dump_traceback_later(args.minutes * 60 + 120, exit=True)
    cfg = TrainFSBConfig(
        data=tuple(data), out=args.run or args.work / "run", steps=args.steps, minutes=args.minutes, channels=args.channels,
        crop=args.crop, batch_size=args.batch_size, device=args.device, workers=args.workers, threads=0,
        val_every=500, val_samples=60, export=args.export, init=args.init, show_progress=False,
    )
    summary = train_fsb(cfg)
    log(f"trained to step {summary['steps']} in {summary['wall_s']} s on {summary['device']}: {summary['last']}")
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
