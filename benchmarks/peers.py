"""The peers' per-scene figures, band included, by running them here: ``python benchmarks/peers.py``.

devbench/PEERS.md gives each peer's per-scene PSNR but only its mean band, so a per-scene band
target (issue 16: devTR's band at least the best peer's + 1 dB on each pair) cannot be checked
from it. This script runs the peer tools that are installed on the devbench scenes, with the
settings that PEERS.md names (OpenFocus ``-m METHOD --cpu``, focusweave ``--keep-size
--no-align``, enfuse with contrast weight 1, hard mask, window 5, luminance projector), scores
their outputs exactly as ``benchmarks/quality.py`` scores ours (its ``score_scene``) and, with
``--ours``, prints the default ``fuse`` beside them.

The peers are not project dependencies. Install them apart, so that their ``torch``
requirement cannot pull a CUDA build into the project's environment::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0 openfocus==1.72.0 focusweave==2.0.0
    python benchmarks/peers.py devTR --ours --bin /tmp/peers/bin
    python benchmarks/peers.py devTR --tool stackmffv3 --tool enfuse --json peers.json

A tool that is not found is skipped with a note. The printed PSNRs should match PEERS.md's to
about 0.05 dB (same files, same tools); a larger difference means a different tool version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (benchmarks/quality.py: the scoring and our fuse)
from speed import ENFUSE_ARGS  # noqa: E402  (PEERS.md's enfuse settings, as the speed benchmark runs it)

# name -> (executable, argv builder from (frames folder, frame list, output file))
TOOLS = {
    "stackmffv3": ("openfocus", lambda d, fr, o: ["-i", str(d), "-o", str(o), "-m", "stackmffv3", "--cpu"]),
    "guided_filter": ("openfocus", lambda d, fr, o: ["-i", str(d), "-o", str(o), "-m", "guided_filter", "--cpu"]),
    "laplacian": ("openfocus", lambda d, fr, o: ["-i", str(d), "-o", str(o), "-m", "openfocus_c", "--cpu"]),
    "focusweave": ("focusweave", lambda d, fr, o: [str(d), "--output", str(o), "--keep-size", "--no-align"]),
    "enfuse": ("enfuse", lambda d, fr, o: [*ENFUSE_ARGS, "-o", str(o), *map(str, fr)]),
}


def find(exe: str, bin_dir: Path | None) -> str | None:
    if bin_dir is not None and (bin_dir / exe).is_file():
        return str(bin_dir / exe)
    return shutil.which(exe)


def run_tool(name: str, exe: str, set_name: str, work: Path, limit: int | None) -> dict:
    """Every scene of ``set_name`` through one peer: ``{"scenes": {scene: row}, "mean": row}``."""
    base = quality.shared_dir() / "data/devbench" / set_name
    scenes = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("scene_"))[:limit]
    rows: dict[str, dict] = {}
    for scene in scenes:
        frames_dir = work / "frames" / set_name / scene.name  # the frames alone: no gt or band beside them
        if not frames_dir.is_dir():
            frames_dir.mkdir(parents=True)
            for f in sorted(scene.glob("frame_*")):
                shutil.copy2(f, frames_dir / f.name)
        frames = sorted(frames_dir.iterdir())
        out = work / name / set_name / f"{scene.name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        p = subprocess.run([exe, *TOOLS[name][1](frames_dir, frames, out)], capture_output=True, text=True)
        if p.returncode != 0 or not out.is_file():
            print(f"  {name} {set_name} {scene.name}: failed (exit {p.returncode}): {p.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        row = quality.score_scene(out, scene)
        row["seconds"] = time.perf_counter() - t0
        rows[scene.name] = row
    means = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))} if rows else {}
    return {"scenes": rows, "mean": means}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="*", metavar="SET", help=f"{' | '.join(quality.SETS)} (default: devTR)")
    ap.add_argument("--tool", action="append", choices=sorted(TOOLS), help="a peer to run (repeatable; default: all found)")
    ap.add_argument("--bin", type=Path, default=None, help="folder that holds the peers' executables (else PATH)")
    ap.add_argument("--ours", action="store_true", help="also the default focusstack fuse, scored the same way")
    ap.add_argument("--limit", type=int, default=None, help="first N scenes of each set")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    a = ap.parse_args(argv)
    sets = a.sets or ["devTR"]
    bad = [s for s in sets if s not in quality.SETS]
    if bad:
        ap.error(f"unknown set(s) {bad}: choose from {', '.join(quality.SETS)}")
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="fs-peers-") as tmp:
        work = Path(tmp)
        for s in sets:
            results: dict[str, dict] = {}
            if a.ours:
                base = quality.FuseConfig(show_progress=False, overwrite=True)
                results["focusstack"] = quality.run_set(s, replace(base, align=replace(base.align, keep_size=True)),
                                                        work / "ours", a.limit, False, False)
            for name in a.tool or list(TOOLS):
                exe = find(TOOLS[name][0], a.bin)
                if exe is None:
                    print(f"note: {TOOLS[name][0]} not found (PATH or --bin): {name} skipped", file=sys.stderr)
                    continue
                print(f"running {name} on {s} ...", file=sys.stderr)
                results[name] = run_tool(name, exe, s, work, a.limit)
            report[s] = results
            names = [n for n in results if results[n]["scenes"]]
            print(f"\n## {s}: PSNR / band per scene")
            print(f"{'scene':10s} " + " ".join(f"{n[:13]:>13s}" for n in names) + f" {'best peer band':>15s}")
            scenes = sorted({sc for n in names for sc in results[n]["scenes"]})
            for sc in scenes:
                cells = []
                for n in names:
                    r = results[n]["scenes"].get(sc)
                    cells.append(f"{r['psnr']:6.2f}/{r['band']:6.2f}" if r else f"{'-':>13s}")
                peer_bands = [results[n]["scenes"][sc]["band"] for n in names if n != "focusstack" and sc in results[n]["scenes"]]
                print(f"{sc:10s} " + " ".join(cells) + (f" {max(peer_bands):15.2f}" if peer_bands else ""))
            print(f"{'mean':10s} " + " ".join(f"{results[n]['mean']['psnr']:6.2f}/{results[n]['mean']['band']:6.2f}" for n in names))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
