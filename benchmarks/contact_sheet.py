"""Real stacks beside the peers: ``python benchmarks/contact_sheet.py [--out DIR] [--bin DIR]``.

Fuses every stack in ``../shared/data/stacks`` (pcb7, pcb10, ring6, keyboard32: real photos,
no ground truth) with the default ``focusstack fuse`` (a whole process, as a user runs it) and,
when enfuse is installed (``apt-get install enfuse``, which brings hugin's align_image_stack),
with enfuse the way its manual suggests for focus stacks: ``align_image_stack`` first, then
``enfuse --exposure-weight=0 --saturation-weight=0 --contrast-weight=1 --hard-mask``.
When OpenFocus and focusweave are found (on the PATH or in ``--bin``; install them apart, as
``benchmarks/peers.py`` says), also OpenFocus's default neural method with its own alignment
(``openfocus -m stackmffv3 --align openfocus --cpu``: these stacks breathe, and its default
``--align none`` doubles edges on pcb7) and focusweave with its defaults (it aligns).
Every peer's output is registered to ours; then the script cuts 1:1 crops where ours and the
peers disagree most (the mean over the peers, after a blur, so that noise does not count):
those are the subject edges and transition regions where halos, doubled edges and blotches
show. The sheet (``contact_sheet.png``, and a JPEG for the docs: one row per crop, ours | each
peer | the frame that is sharpest in that crop) and ``contact_sheet.json`` (crop positions,
times) are written to ``--out``.

The outputs are compared by eye; there is no ground truth. docs/quality.md says what the sheet
of the last run shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import find  # noqa: E402  (a peer's executable in --bin or on the PATH)

ROOT = Path(__file__).resolve().parents[1]
CROP = 192
CROPS_PER_STACK = 3


def shared_dir() -> Path:
    return Path(os.environ.get("FOCUSSTACK_SHARED", ROOT.parent / "shared"))


def frames_of(stack: Path) -> list[Path]:
    return sorted(p for p in stack.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("ab") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=f)
    return time.perf_counter() - t0


def ours(stack: Path, out: Path, log: Path) -> float:
    exe = Path(sys.executable).with_name("focusstack")
    return run([str(exe), "fuse", str(stack), "-o", str(out), "--overwrite", "--quiet"], log)


def enfuse(stack: Path, out: Path, work: Path, log: Path) -> float | None:
    if shutil.which("enfuse") is None or shutil.which("align_image_stack") is None:
        return None
    prefix = work / f"{stack.name}_al_"
    t = run(["align_image_stack", "-m", "-a", str(prefix), *map(str, frames_of(stack))], log)
    aligned = sorted(work.glob(f"{stack.name}_al_*.tif"))
    t += run(["enfuse", "--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1", "--hard-mask",
              f"--output={out}", *map(str, aligned)], log)
    return t


def openfocus(stack: Path, out: Path, log: Path, exe: str | None) -> float | None:
    if exe is None:
        return None
    return run([exe, "-i", str(stack), "-o", str(out), "-m", "stackmffv3", "--align", "openfocus", "--cpu"], log)


def focusweave(stack: Path, out: Path, log: Path, exe: str | None) -> float | None:
    if exe is None:
        return None
    return run([exe, str(stack), "--output", str(out)], log)


def read8(p: Path) -> np.ndarray:
    img = cv2.imread(str(p), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img.dtype == np.uint16:
        img = (img / 257.0 + 0.5).astype(np.uint8)
    return img


def fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop or pad ``img`` to ``shape`` (the tools crop the aligned area differently)."""
    h, w = shape
    ih, iw = img.shape[:2]
    y0, x0 = max(0, (ih - h) // 2), max(0, (iw - w) // 2)
    img = img[y0:y0 + h, x0:x0 + w]
    out = np.zeros((h, w, 3), np.uint8)
    out[: img.shape[0], : img.shape[1]] = img
    return out


def register_to(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``b`` warped onto ``a`` by an affine ECC fit on greys at 1/4 scale (the tools crop and
    register to different references, so the same pixel is not the same point otherwise)."""
    ga, gb = (cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA).astype(np.float32)
              for x in (a, b))
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(ga, gb, warp, cv2.MOTION_AFFINE, (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5), None, 5)
    except cv2.error:
        return b
    warp[:, 2] *= 4.0
    return cv2.warpAffine(b, warp, (a.shape[1], a.shape[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def pick_crops(diff: np.ndarray, n: int, size: int) -> list[tuple[int, int]]:
    """``n`` non-overlapping ``size`` windows (top-left y, x) where ``diff`` ((H, W, 3) float32,
    absolute differences on the 8-bit scale) is largest."""
    d = cv2.GaussianBlur(diff.mean(2), (0, 0), 3)
    score = cv2.boxFilter(d, -1, (size, size), normalize=True)
    h, w = d.shape
    half = size // 2
    my, mx = max(half, h // 12), max(half, w // 12)  # not the borders, where the tools' crops differ
    score[:my, :] = score[-my:, :] = 0
    score[:, :mx] = score[:, -mx:] = 0
    picks = []
    for _ in range(n):
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[y, x] <= 0:
            break
        picks.append((int(y - half), int(x - half)))
        score[max(0, y - size):y + size, max(0, x - size):x + size] = 0
    return picks


def sharpest_frame_crop(frames: list[Path], shape: tuple[int, int], y: int, x: int, size: int) -> tuple[np.ndarray, str]:
    best, name, crop = -1.0, "", None
    for p in frames:
        img = fit(read8(p), shape)[y:y + size, x:x + size]
        e = float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())
        if e > best:
            best, name, crop = e, p.name, img
    return crop, name


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 16), (0, 0, 0), -1)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "contact_sheet")
    ap.add_argument("--bin", type=Path, default=None, help="folder that holds openfocus and focusweave (else PATH)")
    ap.add_argument("stacks", nargs="*", default=["pcb7", "pcb10", "ring6", "keyboard32"])
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="focusstack-sheet-"))
    log = args.out / "tools.log"
    peers = {
        "enfuse": lambda st, o: enfuse(st, o, work, log),
        "stackmffv3": lambda st, o: openfocus(st, o, log, find("openfocus", args.bin)),
        "focusweave": lambda st, o: focusweave(st, o, log, find("focusweave", args.bin)),
    }
    rows, report = [], {}
    for name in args.stacks:
        stack = shared_dir() / "data" / "stacks" / name
        frames = frames_of(stack)
        o_path = args.out / f"{name}_focusstack.tif"
        t_ours = ours(stack, o_path, log)
        a = read8(o_path)
        outs, times = {}, {}
        for peer, fuse in peers.items():
            p_path = args.out / f"{name}_{peer}.tif"
            times[peer] = fuse(stack, p_path)
            if times[peer] is not None:
                outs[peer] = register_to(fit(read8(p_path), a.shape[:2]), a)
        crops = [(0, 0)]
        if outs:
            diff = np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)) for b in outs.values()], axis=0)
            crops = pick_crops(diff, CROPS_PER_STACK, CROP)
        report[name] = {"frames": len(frames), "size": [a.shape[1], a.shape[0]], "focusstack_s": round(t_ours, 2),
                        **{f"{p}_s": (round(t, 2) if t is not None else None) for p, t in times.items()}, "crops_yx": crops}
        for y, x in crops:
            sharp, fname = sharpest_frame_crop(frames, a.shape[:2], y, x, CROP)
            cells = [label(a[y:y + CROP, x:x + CROP], f"{name} focusstack ({x},{y})")]
            cells += [label(outs[p][y:y + CROP, x:x + CROP], f"{p} (registered)") if p in outs
                      else label(np.zeros((CROP, CROP, 3), np.uint8), f"{p}: not installed") for p in peers]
            cells.append(label(sharp, f"sharpest frame {fname}"))
            rows.append(np.hstack([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells]))
        print(f"{name}: focusstack {t_ours:.1f} s, " + ", ".join(f"{p} {t if t is None else round(t, 1)} s" for p, t in times.items())
              + f", crops {crops}", file=sys.stderr)
    sheet = np.vstack(rows)
    cv2.imwrite(str(args.out / "contact_sheet.png"), sheet)
    cv2.imwrite(str(args.out / "contact_sheet.jpg"), sheet, [cv2.IMWRITE_JPEG_QUALITY, 88])
    (args.out / "contact_sheet.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
