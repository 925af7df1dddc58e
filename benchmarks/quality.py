"""Quality on the devbench sets (made outside the project): ``python benchmarks/quality.py``.

Fuses every scene of ``../shared/data/devbench/{devA,devTR,mfvoc}`` through the public entry
point (``focusstack.jobs.fuse.fuse_stack``, the code behind ``focusstack fuse``) with the
default options unless told otherwise (but ``--keep-size``, so that an output whose frames were
moved keeps the GT's geometry), and scores it as devbench/SOURCE.md says: PSNR on the
8-bit scale (16-bit outputs divided by 257, capped at 60 dB per scene) over the whole image,
inside ``band.png`` ("band") and outside it ("flat"), and SSIM (``focusstack.metrics.basic``).
The peers' figures are read from devbench/PEERS.md and printed beside ours.

    python benchmarks/quality.py                       # all three sets, default fuse
    python benchmarks/quality.py devA --no-align       # one set, alignment off
    python benchmarks/quality.py devA --engine hybrid  # another engine
    python benchmarks/quality.py --warp devA           # devA warped by a known similarity
    python benchmarks/quality.py --json out.json --per-scene
    python benchmarks/quality.py --markdown tables.md          # the tables of docs/quality.md

``--warp`` applies a seeded similarity (scale 1-2 % per focus step, like focus breathing, and a
shift of up to 3 px) to every frame, fuses with alignment on, registers the output to the GT by
the known transform of the reference frame, and reports the PSNR against the unwarped fusion's,
both over the pixels that every warped frame shows (the warp fills the rest with reflected
border, which no method can recover).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from focusstack.config import AlignConfig, FuseConfig  # noqa: E402
from focusstack.io import read_image  # noqa: E402
from focusstack.jobs.fuse import fuse_stack  # noqa: E402

SETS = ("devA", "devTR", "mfvoc")


def shared_dir() -> Path:
    import os

    return Path(os.environ.get("FOCUSSTACK_SHARED", ROOT.parent / "shared"))


def read8(path: Path) -> np.ndarray:
    """An image as ``(H, W, 3)`` float64 on the 8-bit scale [0, 255] (16-bit divided by 257)."""
    px = read_image(path).pixels  # float32 in [0, 1]
    return np.round(px.astype(np.float64) * 255.0)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a - b) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = float(d.mean())
    return 60.0 if mse <= 0 else min(60.0, 10.0 * math.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, valid part) over the
    channels, on the 8-bit scale; the same definition as ``focusstack.metrics.basic.ssim``
    without importing torch."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        f = lambda t: cv2.GaussianBlur(t, (11, 11), 1.5, borderType=cv2.BORDER_CONSTANT)[5:-5, 5:-5]  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        vals.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return float(np.mean(vals))


def _peers_section(set_name: str) -> list[str]:
    text = (shared_dir() / "data/devbench/PEERS.md").read_text()
    return text.split(f"## {set_name}\n", 1)[1].split("\n## ", 1)[0].splitlines()


def peers(set_name: str) -> dict[str, dict[str, float]]:
    """Means per method from devbench/PEERS.md: ``{method: {psnr, ssim, band, flat}}``."""
    out = {}
    for line in _peers_section(set_name):
        m = re.match(r"^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            out[m.group(1)] = dict(zip(("psnr", "ssim", "band", "flat"), map(float, m.groups()[1:])))
    return out


def peer_scenes(set_name: str) -> dict[str, dict[str, float]]:
    """Per-scene PSNR per method from PEERS.md: ``{scene: {method: psnr}}``."""
    names = list(peers(set_name))
    out = {}
    for line in _peers_section(set_name):
        cells = line.split()
        if len(cells) == len(names) + 1 and cells[0].startswith("scene_"):
            out[cells[0]] = {n: float(c.rstrip("*")) for n, c in zip(names, cells[1:])}
    return out


def markdown(report: dict) -> str:
    """The tables of docs/quality.md: per set, our means beside the peers', then every scene."""
    out = []
    for s, r in report["sets"].items():
        p, ps, m = peers(s), peer_scenes(s), r["mean"]
        out += [f"### {s} ({len(r['scenes'])} scenes)", "", "| method | PSNR | SSIM | band | flat |", "|---|---|---|---|---|",
                f"| **focusstack (default fuse)** | **{m['psnr']:.2f}** | {m['ssim']:.4f} | {m['band']:.2f} | {m['flat']:.2f} |"]
        out += [f"| {n} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['band']:.2f} | {v['flat']:.2f} |" for n, v in p.items()]
        out.append("")
        wins = [sc for sc, row in r["scenes"].items() if ps.get(sc) and row["psnr"] >= max(ps[sc].values())]
        if s == "mfvoc":  # 200 scenes: the count only
            out += [f"Ours is the best PSNR on {len(wins)} of {len(r['scenes'])} scenes "
                    f"(per scene: `benchmarks/quality.py mfvoc --per-scene`).", ""]
            continue
        out += ["| scene | ours | ours band | " + " | ".join(p) + " |", "|---|---|---|" + "---|" * len(p)]
        for sc, row in r["scenes"].items():
            mark = " (best)" if sc in wins else ""
            out.append(f"| {sc} | {row['psnr']:.2f}{mark} | {row['band']:.2f} | "
                       + " | ".join(f"{ps.get(sc, {}).get(n, float('nan')):.2f}" for n in p) + " |")
        out += ["", f"Ours is the best PSNR on {len(wins)} of {len(r['scenes'])} scenes.", ""]
    return "\n".join(out)


def similarity(scale: float, angle_deg: float, dx: float, dy: float, w: int, h: int) -> np.ndarray:
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    t = np.eye(3)
    t[:2, :2] = rot
    t[:2, 2] = c - rot @ c + np.array([dx, dy])
    return t


def warp_scene(scene: Path, dest: Path, order: list[int], seed: int) -> dict[int, np.ndarray]:
    """Write ``scene``'s frames into ``dest``, frame at focus position ``p`` warped by a
    similarity (scale ``1 + s p``, ``s`` in 1-2 %/(K-1), a shift of up to 3 px, 0.2 deg), as a
    lens breathing while it focuses. Returns the frame -> warped-pixels transforms."""
    rng = np.random.default_rng(seed)
    frames = sorted(scene.glob("frame_*"))
    step = rng.uniform(0.01, 0.02) / max(1, len(frames) - 1)
    dest.mkdir(parents=True)
    out = {}
    for pos, k in enumerate(order):
        img = cv2.imread(str(frames[k]), cv2.IMREAD_UNCHANGED)
        h, w = img.shape[:2]
        t = similarity(1.0 + step * pos, rng.uniform(-0.2, 0.2), rng.uniform(-3, 3), rng.uniform(-3, 3), w, h)
        wimg = cv2.warpPerspective(img, t, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(dest / frames[k].name), wimg)
        out[k] = t
    return out


def covered(transforms: dict[int, np.ndarray], w: int, h: int, margin: int = 3) -> np.ndarray:
    """``(h, w)`` bool in the GT's geometry: the pixels that every warped frame shows (a point
    ``u`` is seen by frame ``k`` when ``T_k u`` lies inside that frame, ``margin`` px from its
    edge). Elsewhere the warped frames hold reflected border, which no method can undo."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(w * h)])
    ok = np.ones(w * h, bool)
    for t in transforms.values():
        q = t @ pts
        x, y = q[0] / q[2], q[1] / q[2]
        ok &= (x >= margin) & (x <= w - 1 - margin) & (y >= margin) & (y <= h - 1 - margin)
    return ok.reshape(h, w)


def score_scene(out: Path, scene: Path, region: np.ndarray | None = None) -> dict[str, float]:
    """PSNR/SSIM/band/flat of ``out`` against the scene's GT; with ``region`` ((H, W) bool),
    PSNR, band and flat only inside it (SSIM over the whole image)."""
    gt = read8(next(scene.glob("gt.*")))
    band = cv2.imread(str(scene / "band.png"), cv2.IMREAD_GRAYSCALE) > 127
    pred = read8(out)
    if pred.shape != gt.shape:
        raise SystemExit(f"{out}: output {pred.shape[:2]} differs from the GT {gt.shape[:2]} (pass --keep-size?)")
    inside = np.ones(band.shape, bool) if region is None else region
    m3 = lambda m: m[..., None].repeat(3, -1)  # noqa: E731
    return {"psnr": psnr(pred, gt, m3(inside)), "ssim": ssim(pred, gt), "band": psnr(pred, gt, m3(band & inside)),
            "flat": psnr(pred, gt, m3(~band & inside))}


def run_set(set_name: str, config: FuseConfig, work: Path, limit: int | None, warp: bool, verbose: bool) -> dict:
    base = shared_dir() / "data/devbench" / set_name
    manifest = {m["scene"]: m for m in json.loads((base / "manifest.json").read_text())}
    scenes = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("scene_"))[:limit]
    rows: dict[str, dict] = {}
    t0 = time.perf_counter()
    for scene in scenes:
        out = work / set_name / f"{scene.name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        ts = time.perf_counter()
        if warp:
            order = manifest[scene.name].get("focus_order") or list(range(len(list(scene.glob("frame_*")))))
            wdir = work / "warped" / scene.name
            ts_ = warp_scene(scene, wdir, order, seed=int(scene.name.split("_")[1]))
            res = fuse_stack(sorted(wdir.glob("frame_*")), out, replace(config, align=replace(config.align, enabled=True, keep_size=True)))
            ref_file = res.alignment.get("reference") if res.alignment.get("enabled") else None
            ref = next(k for k in ts_ if sorted(scene.glob("frame_*"))[k].name == ref_file) if ref_file else order[len(order) // 2]
            # back to the GT's geometry by the reference frame's known warp
            img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
            h, w = img.shape[:2]
            back = cv2.warpPerspective(img, np.linalg.inv(ts_[ref]), (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            cv2.imwrite(str(out), back)
            plain = work / set_name / f"{scene.name}_plain.png"
            fuse_stack(sorted(scene.glob("frame_*")), plain, replace(config, align=replace(config.align, enabled=False)))
            # both scored where every warped frame has content (the reflected borders of the
            # warp are not the method's to recover)
            region = covered(ts_, w, h)
            row = score_scene(out, scene, region)
            row["unwarped_psnr"] = score_scene(plain, scene, region)["psnr"]
            # the unwarped fusion through the same warp and back: what the benchmark's own two
            # resamplings cost (fine texture loses 2-7 dB to two cubic warps), so that the
            # difference to it is the registration's
            p_img = cv2.imread(str(plain), cv2.IMREAD_UNCHANGED)
            there = cv2.warpPerspective(p_img, ts_[ref], (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            cv2.imwrite(str(plain), cv2.warpPerspective(there, np.linalg.inv(ts_[ref]), (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
            row["unwarped_roundtrip_psnr"] = score_scene(plain, scene, region)["psnr"]
            row["covered"] = float(region.mean())
        else:
            fuse_stack(sorted(scene.glob("frame_*")), out, config)
            row = score_scene(out, scene)
        row["seconds"] = time.perf_counter() - ts
        rows[scene.name] = row
        if verbose:
            print(f"  {set_name} {scene.name}: " + " ".join(f"{k} {v:.2f}" for k, v in row.items()), file=sys.stderr)
    means = {k: float(np.nanmean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    return {"scenes": rows, "mean": means, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="*", metavar="SET", help=f"{' | '.join(SETS)} (default: all three)")
    ap.add_argument("--engine", default=None, help="fuse engine (default: fuse's default)")
    ap.add_argument("--no-align", action="store_true", help="fuse with alignment off")
    ap.add_argument("--warp", action="store_true", help="warp every frame by a known similarity first (devA)")
    ap.add_argument("--limit", type=int, default=None, help="first N scenes of each set")
    ap.add_argument("--per-scene", action="store_true", help="print every scene beside the peers")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--markdown", type=Path, default=None, help="write the tables of docs/quality.md to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    a.sets = a.sets or list(SETS)
    bad = [s for s in a.sets if s not in SETS]
    if bad:
        ap.error(f"unknown set(s) {bad}: choose from {', '.join(SETS)}")
    # default options, but the GT's geometry kept: where alignment moves a frame, the default
    # crop to the common area would make the output smaller than the GT (--keep-size instead)
    base = FuseConfig(show_progress=False, overwrite=True)
    config = replace(base, align=replace(base.align, keep_size=True))
    if a.engine:
        config = replace(config, engine=a.engine)
    if a.no_align:
        config = replace(config, align=AlignConfig(enabled=False))
    report = {"engine": config.engine, "align": config.align.enabled, "warp": a.warp, "sets": {}}
    with tempfile.TemporaryDirectory(prefix="fs-quality-") as tmp:
        for s in a.sets:
            r = run_set(s, config, Path(tmp), a.limit, a.warp, a.verbose)
            report["sets"][s] = r
            p = peers(s)
            m = r["mean"]
            print(f"\n## {s} ({len(r['scenes'])} scenes, {r['seconds']:.0f} s; engine {config.engine}, "
                  f"align {'on' if config.align.enabled else 'off'}{', warped' if a.warp else ''})")
            print(f"{'method':16s} {'psnr':>7s} {'ssim':>7s} {'band':>7s} {'flat':>7s}")
            print(f"{'focusstack':16s} {m['psnr']:7.2f} {m['ssim']:7.4f} {m['band']:7.2f} {m['flat']:7.2f}")
            if a.warp:
                print(f"{'  unwarped':16s} {m['unwarped_psnr']:7.2f}   (warped - unwarped: {m['psnr'] - m['unwarped_psnr']:+.2f} dB)")
                print(f"{'  unwarped, warped and back':16s} {m['unwarped_roundtrip_psnr']:7.2f}   "
                      f"(warped - that: {m['psnr'] - m['unwarped_roundtrip_psnr']:+.2f} dB; the rest is the benchmark's own resampling)")
            for name, v in p.items():
                print(f"{name:16s} {v['psnr']:7.2f} {v['ssim']:7.4f} {v['band']:7.2f} {v['flat']:7.2f}")
            if a.per_scene:
                ps = peer_scenes(s)
                print(f"{'scene':10s} {'ours':>7s} {'band':>7s} {'best peer':>10s}")
                for sc, row in r["scenes"].items():
                    best = max(ps.get(sc, {"-": float('nan')}).items(), key=lambda kv: kv[1])
                    print(f"{sc:10s} {row['psnr']:7.2f} {row['band']:7.2f} {best[1]:7.2f} {best[0]}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    if a.markdown:
        a.markdown.write_text(markdown(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
