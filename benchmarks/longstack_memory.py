"""Peak memory of fusing a long stack: 40 frames of 1920x1080 against 10 frames.

Target (issue 17; issue 9 allowed 1.3x): the 40-frame peak is at most 1.2 times the 10-frame
peak, and at most 4 GB; frames are streamed (two passes, one slab of at most 7 frames in memory
at a time, slab results merged as they come and waiting for their merge on disk), so the peak
must not grow with the number of frames.

    python benchmarks/longstack_memory.py [--frames 10 40] [--size 1920x1080] [--engine ENGINE]
                                          [--workdir DIR] [--no-align] [--json FILE]

It renders a synthetic 8-bit TIFF focus stack once per frame count (a band-limited texture in
8 depth bands, each frame focused at one depth, magnified a little more than the last to mimic
focus breathing, plus a small shift), then runs `focusstack fuse --json` in a child process
under /usr/bin/time -v (or resource.getrusage of the child where that is missing), so the
peak RSS is the whole command's. Without --engine, fuse's default engine runs (the decision
engine: no weights). The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BANDS = 8


def _texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    t = np.zeros((h, w, 3), np.float32)
    for s in (2, 4, 8, 16, 32, 64):
        n = rng.random((h // s + 2, w // s + 2, 3)).astype(np.float32)
        t += cv2.resize(n, (w + 2 * s, h + 2 * s), interpolation=cv2.INTER_CUBIC)[s : s + h, s : s + w]
    t = cv2.GaussianBlur(t, (0, 0), 0.7)
    t -= t.min()
    return t / t.max()


def make_stack(folder: Path, frames: int, width: int, height: int) -> None:
    """``frames`` TIFFs spanning the same depth range whatever their number."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.tif"))) == frames:
        return
    rng = np.random.default_rng(0)
    tex = _texture(height, width, rng)
    band = (np.arange(width) * BANDS // width).astype(np.int32)
    masks = [np.broadcast_to((band == d)[None, :], (height, width)).astype(np.float32) for d in range(BANDS)]
    for i in range(frames):
        focus = i * (BANDS - 1) / max(1, frames - 1)
        out = np.zeros_like(tex)
        wsum = np.zeros((height, width), np.float32)
        for d, m in enumerate(masks):
            s = abs(d - focus) * 2.0
            if s < 0.3:
                out += tex * m[..., None]
                wsum += m
            else:
                out += cv2.GaussianBlur(tex * m[..., None], (0, 0), s)
                wsum += cv2.GaussianBlur(m, (0, 0), s)
        out /= np.maximum(wsum, 1e-6)[..., None]
        scale = 1.0 + 0.02 * i / max(1, frames - 1)  # 2 % breathing over the stack
        t = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), 0.0, scale)
        t[:, 2] += rng.uniform(-2, 2, 2)
        out = cv2.warpAffine(out, t, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        tifffile.imwrite(folder / f"frame_{i:03d}.tif", np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))


def run_fuse(folder: Path, out: Path, engine: str | None, align: bool) -> dict:
    cmd = [sys.executable, "-m", "focusstack", "fuse", str(folder), "-o", str(out), "--json", "-q", "--overwrite"]
    if engine:
        cmd += ["--engine", engine]
    if not align:
        cmd.append("--no-align")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    if Path("/usr/bin/time").exists():
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        peak_mb = int(m.group(1)) / 1024 if m else float("nan")
    else:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"fuse failed ({p.returncode}):\n{p.stderr[-2000:]}")
    summary = json.loads(p.stdout)
    return {"peak_rss_mb": round(peak_mb, 1), "wall_s": round(wall, 1), "slabs": len(summary["slabs"]),
            "merges": summary["merges"], "output": f"{summary['width']}x{summary['height']}",
            "timings_s": summary["timings_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--engine", default=None, help="default: fuse's default engine")
    ap.add_argument("--no-align", dest="align", action="store_false")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = args.workdir or Path(tempfile.gettempdir()) / "focusstack_longstack_bench"
    results = {}
    load_before = os.getloadavg()
    for n in args.frames:
        folder = work / f"stack_{n}_{width}x{height}"
        t = time.perf_counter()
        make_stack(folder, n, width, height)
        print(f"{n} frames ready in {folder} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        results[n] = run_fuse(folder, work / f"fused_{n}.tif", args.engine, args.align)
        print(f"{n} frames: {json.dumps(results[n])}", file=sys.stderr)
    base = results[min(results)]["peak_rss_mb"]
    for n, r in sorted(results.items()):
        r["ratio_to_fewest"] = round(r["peak_rss_mb"] / base, 3)
    report = {"size": f"{width}x{height}", "engine": args.engine or "default", "align": args.align,
              "load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count(), "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    big = results[max(results)]
    ok = big["ratio_to_fewest"] <= 1.2 and big["peak_rss_mb"] <= 4096
    print(f"target (<= 1.2x and <= 4 GB): {'met' if ok else 'NOT met'}; load average {load_before[0]:.2f} -> "
          f"{report['load_after'][0]:.2f} ({os.cpu_count()} CPUs)", file=sys.stderr)


if __name__ == "__main__":
    main()
