"""Speed of the default ``focusstack fuse`` against enfuse, as whole processes: ``python benchmarks/speed.py``.

Builds (once, in ``--work``) two registered 7-frame stacks from devbench devA scene_014 (or any
7-frame folder given with ``--source``): 4096x2731 (upscaled, uncompressed 8-bit TIFF) and
768x512 (the frames as they are). Then, interleaved, ``--repeats`` times each: the default
``focusstack fuse STACK -o OUT.tif`` and, when ``enfuse`` is on the PATH (``apt-get install
enfuse``), ``enfuse`` with the focus-stacking settings of devbench/PEERS.md (contrast weight 1,
hard mask, window 5, luminance projector). Reports the median wall time, the ratio
ours/enfuse, the peak RSS of each (``/usr/bin/time``-free: ``resource.getrusage`` of the
children), the machine's load average, the median of each stage of ours (``--json``
``timings_s``: read, align, fuse, write; ``process`` is what the process spends outside them:
interpreter, imports, option parsing, exit), and ``focusstack --help`` against
``python -c "import numpy, cv2"``. Absolute times on a shared machine move; report the ratios.

    python benchmarks/speed.py [--repeats 3] [--json FILE] [--only 768|4k|startup]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
FOCUSSTACK = [sys.executable, "-m", "focusstack"]
ENFUSE_ARGS = ["--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask",
               "--contrast-window-size=5", "--gray-projector=luminance"]


def shared_dir() -> Path:
    return Path(os.environ.get("FOCUSSTACK_SHARED", ROOT.parent / "shared"))


def build(source: Path, work: Path) -> dict[str, Path]:
    frames = sorted(source.glob("frame_*")) or sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".tif", ".jpg"))
    out = {}
    for name, size in (("768", None), ("4k", (4096, 2731))):
        d = work / f"stack_{name}"
        if not d.is_dir() or len(list(d.iterdir())) != len(frames):
            d.mkdir(parents=True, exist_ok=True)
            for i, p in enumerate(frames):
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if size is not None:
                    img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(str(d / f"f{i}.tif"), img, [cv2.IMWRITE_TIFF_COMPRESSION, 1])
        out[name] = d
    return out


def timed(cmd: list[str], stages: list[dict] | None = None) -> float:
    """Wall seconds of one process (its peak memory is measured apart, by :func:`peak_of`).
    With ``stages``, the command prints ``--json``: its ``timings_s`` (and the rest of the wall
    time, as ``process``) are appended there."""
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE if stages is not None else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    if stages is not None:
        timings = dict(json.loads(r.stdout)["timings_s"])
        timings["process"] = wall - timings["total"]
        timings["wall"] = wall
        stages.append(timings)
    return wall


def peak_of(cmd: list[str]) -> float:
    """Peak RSS (MB) of one run, measured in a fresh interpreter so earlier children do not mask it."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL, check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True)
    return int(r.stdout.strip()) / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=None, help="a 7-frame stack (default: devbench devA scene_014)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "focusstack-speed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("768", "4k", "startup"), action="append", default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    only = a.only or ["startup", "768", "4k"]
    source = a.source or shared_dir() / "data/devbench/devA/scene_014"
    a.work.mkdir(parents=True, exist_ok=True)
    stacks = build(source, a.work)
    enfuse = shutil.which("enfuse")
    report: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "repeats": a.repeats, "results": {}}
    if "startup" in only:
        t_help, t_np = [], []
        for _ in range(max(5, a.repeats)):
            t_help.append(timed([*FOCUSSTACK, "--help"]))
            t_np.append(timed([sys.executable, "-c", "import numpy, cv2"]))
        h, n = statistics.median(t_help), statistics.median(t_np)
        report["results"]["startup"] = {"help_s": h, "import_numpy_cv2_s": n, "ratio": h / n}
        print(f"startup: focusstack --help {h:.3f} s, python -c 'import numpy, cv2' {n:.3f} s, ratio {h / n:.2f}")
    for name in ("768", "4k"):
        if name not in only:
            continue
        stack = stacks[name]
        ours_cmd = [*FOCUSSTACK, "fuse", str(stack), "-o", str(a.work / f"ours_{name}.tif"), "--overwrite", "-q", "--json"]
        enf_cmd = [enfuse, *ENFUSE_ARGS, "-o", str(a.work / f"enfuse_{name}.tif"), *sorted(map(str, stack.iterdir()))] if enfuse else None
        ours, theirs, stages = [], [], []
        for _ in range(a.repeats):  # interleaved
            ours.append(timed(ours_cmd, stages))
            if enf_cmd:
                theirs.append(timed(enf_cmd))
        row = {"ours_s": statistics.median(ours), "ours_all_s": ours, "ours_peak_mb": peak_of(ours_cmd),
               "stages_s": {k: round(statistics.median(st[k] for st in stages), 3) for k in stages[0]}}
        if enf_cmd:
            row.update(enfuse_s=statistics.median(theirs), enfuse_all_s=theirs, enfuse_peak_mb=peak_of(enf_cmd))
            row["ratio"] = row["ours_s"] / row["enfuse_s"]
        report["results"][name] = row
        line = f"{name}: focusstack {row['ours_s']:.2f} s (peak {row['ours_peak_mb']:.0f} MB)"
        if enf_cmd:
            line += f", enfuse {row['enfuse_s']:.2f} s (peak {row['enfuse_peak_mb']:.0f} MB), ratio ours/enfuse {row['ratio']:.2f}"
        else:
            line += "; enfuse not installed (apt-get install enfuse): no ratio"
        print(line)
        print(f"{name} stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in row["stages_s"].items()))
    report["load_after"] = os.getloadavg()
    print(f"load average before {report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} ({report['cpus']} CPUs)")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
