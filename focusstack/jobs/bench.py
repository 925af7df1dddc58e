"""``focusstack bench``: how many ``size x size`` images per second the VAEEDOF pipeline fuses, for
2 to 7 input frames, per backend (torch, onnx), device and precision (VAEEDOF's Figure 6).

One image is one ``fuse_patch`` call: encode the K frames, duplicate the latents up to 7, run the
Fusion U-Net, decode (exactly what ``fuse`` does for each 512 px patch). Inputs are seeded
random frames: speed does not depend on the content or the weights. For each (backend, device,
precision) the backend is built once (for onnx: exported or taken from the cache), then for
each frame count: ``warmup`` untimed calls, ``repeats`` timed calls. Every entry reports the
median images/s, its spread (interquartile range and min/max over the repeats), the median
seconds per image, and the peak resident memory of that measurement.

Peak memory is ``ru_maxrss``. Before each measurement the kernel's high-water mark is reset
(``/proc/self/clear_refs``, Linux); where that is refused the figure is the process's peak so
far (``peak_memory_scope`` says which).

``full`` adds the time to fuse one 7-frame ``full_size``-square stack (4096 by default) through
the tiling engine, per (backend, device, precision): minutes on a 2-core CPU.

The JSON schema is documented in docs/bench.md. :func:`run_bench` is the whole job; the CLI only
parses options into a :class:`BenchConfig`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from focusstack.backends import make_backend
from focusstack.backends.device import missing_onnx_error, onnx_available, resolve_device, resolve_onnx_device
from focusstack.config import BACKENDS, DEVICES, MAX_FRAMES, TileConfig
from focusstack.engines.vaeedof import VAEEDOFEngine
from focusstack.lazy import load
from focusstack.progress import progress_bar
from focusstack.errors import ConfigError, FocusstackError, UsageError

SCHEMA = "focusstack-bench/1"
BENCH_PRECISIONS = ("fp32", "bf16", "fp16")
MIN_FRAMES = 2
#: Fields that identify an entry; a baseline entry matches a new one when all of them agree.
KEY_FIELDS = ("backend", "device", "precision", "frames", "size")
PLOT_SUFFIXES_PIL = (".png",)
PLOT_SUFFIXES_MPL = (".png", ".svg", ".pdf")


class BenchRegressionError(FocusstackError):
    """Throughput fell more than ``--max-regression`` percent below the baseline (exit 1)."""


def parse_frames(spec: str) -> tuple[int, ...]:
    """``"2-7"``, ``"2,7"`` or ``"2,4-7"`` -> sorted distinct frame counts, each 2..7."""
    bad = ConfigError(
        f"--frames {spec}: not a frame count, list or range",
        expected=f"numbers from {MIN_FRAMES} to {MAX_FRAMES}: a range (2-7), a list (2,7) or both (2,4-7)",
        actual=repr(spec),
        fix="pass e.g. --frames 2-7",
    )
    out: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            raise bad
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise bad
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise bad from None
    outside = sorted(k for k in out if not MIN_FRAMES <= k <= MAX_FRAMES)
    if outside:
        raise ConfigError(
            f"--frames {spec}: every frame count must be between {MIN_FRAMES} and {MAX_FRAMES}",
            expected=f"{MIN_FRAMES}..{MAX_FRAMES} (the Fusion U-Net takes at most {MAX_FRAMES} frames)",
            actual=", ".join(map(str, outside)),
            fix=f"pass e.g. --frames {MIN_FRAMES}-{MAX_FRAMES}",
        )
    return tuple(sorted(out))


@dataclass(frozen=True)
class BenchConfig:
    """Everything ``focusstack bench`` needs. The defaults are the small CI configuration
    (2 and 7 frames at 256 px, fp32, 1 warm-up + 3 timed calls: about a minute on 2 cores)."""

    #: Backends to measure; empty means every installed one (torch, plus onnx when importable).
    backends: tuple[str, ...] = ()
    device: str = "auto"
    precisions: tuple[str, ...] = ("fp32",)
    frames: tuple[int, ...] = (2, 7)
    size: int = 256
    repeats: int = 3
    warmup: int = 1
    #: Intra-op threads for torch and ONNX Runtime; 0 keeps each library's default.
    threads: int = 0
    full: bool = False
    full_size: int = 4096
    tile: int = 512
    vae_weights: Path | None = None
    fusion_weights: Path | None = None
    onnx_cache: Path | None = None
    plot: Path | None = None
    baseline: Path | None = None
    max_regression: float = 10.0
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        for b in self.backends:
            if b not in BACKENDS:
                raise ConfigError("unknown value for --backend", expected=" | ".join(BACKENDS), actual=repr(b),
                                  fix=f"pass one of: {', '.join(BACKENDS)}")
        if self.device not in DEVICES:
            raise ConfigError("unknown value for --device", expected=" | ".join(DEVICES), actual=repr(self.device))
        if not self.precisions:
            raise ConfigError("no --precision given", expected=" | ".join(BENCH_PRECISIONS), actual="none")
        for p in self.precisions:
            if p not in BENCH_PRECISIONS:
                raise ConfigError("unknown value for --precision", expected=" | ".join(BENCH_PRECISIONS),
                                  actual=repr(p), fix="pass fp32, bf16 or fp16 (repeatable)")
        if not self.frames:
            raise ConfigError("no --frames given", expected="e.g. 2-7", actual="none")
        for k in self.frames:
            if not MIN_FRAMES <= k <= MAX_FRAMES:
                raise ConfigError(f"--frames: {k} is out of range", expected=f"{MIN_FRAMES}..{MAX_FRAMES}", actual=str(k),
                                  fix=f"pass e.g. --frames {MIN_FRAMES}-{MAX_FRAMES}")
        for name, value in (("--size", self.size), ("--full-size", self.full_size), ("--tile", self.tile)):
            if value < 64 or value % 64:
                raise ConfigError(f"{name} must be a multiple of 64 of at least 64",
                                  expected="64, 128, ..., 512, ...", actual=str(value),
                                  fix=f"pass {name} 512 (the paper's patch size) or another multiple of 64")
        if self.repeats < 1:
            raise ConfigError("--repeats must be at least 1", expected=">= 1", actual=str(self.repeats))
        if self.warmup < 0:
            raise ConfigError("--warmup must not be negative", expected=">= 0", actual=str(self.warmup))
        if self.threads < 0:
            raise ConfigError("--threads must not be negative", expected=">= 0 (0: library default)", actual=str(self.threads))
        if not 0 <= self.max_regression < 100:
            raise ConfigError("--max-regression out of range", expected="0 <= PCT < 100", actual=str(self.max_regression))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
            elif isinstance(v, tuple):
                d[k] = list(v)
        return d


@dataclass
class BenchResult:
    schema: str
    created: str
    host: dict
    config: dict
    weights: dict
    entries: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    full: list[dict] = field(default_factory=list)
    baseline: dict | None = None
    plot: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def regressions(self) -> list[dict]:
        return list(self.baseline["regressions"]) if self.baseline else []


# ---- measurement helpers ----------------------------------------------------------------------


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _host() -> dict:
    import torch

    try:
        import onnxruntime as ort  # optional extra: onnxruntime

        ort_version, providers = ort.__version__, ort.get_available_providers()
    except ImportError:
        ort_version, providers = None, []
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "loadavg_1m_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _stats(times: list[float]) -> dict:
    ips = 1.0 / np.asarray(times, dtype=np.float64)
    q25, q50, q75 = np.percentile(ips, [25, 50, 75])
    return {
        "images_per_s": round(float(q50), 4),
        "images_per_s_iqr": [round(float(q25), 4), round(float(q75), 4)],
        "images_per_s_min": round(float(ips.min()), 4),
        "images_per_s_max": round(float(ips.max()), 4),
        "seconds_per_image": round(float(np.median(times)), 4),
        "times_s": [round(t, 4) for t in times],
    }


def _load_models(cfg: BenchConfig):  # noqa: ANN202
    """(vae, fusion, weights description). The Fusion U-Net: the given or shipped weights (their
    architecture sets the speed), else a seeded random one of the default architecture."""
    import torch

    # the networks import torch: loaded when a measurement starts, not for `bench --help`
    FusionUNet = load("focusstack.networks.fusion_unet:FusionUNet")  # noqa: N806
    weights = load("focusstack.networks:weights")
    FUSION_WEIGHTS, default_fusion_dir, load_fusion, load_vae, resolve_vae_dir = (  # noqa: N806
        weights.FUSION_WEIGHTS, weights.default_fusion_dir, weights.load_fusion, weights.load_vae, weights.resolve_vae_dir)

    vae_dir = resolve_vae_dir(cfg.vae_weights)
    vae = load_vae(vae_dir)
    folder = cfg.fusion_weights or default_fusion_dir()
    if cfg.fusion_weights is not None or (Path(folder) / FUSION_WEIGHTS).is_file():
        loaded = load_fusion(Path(folder), require_trained=False)
        fusion, desc = loaded.model, str(loaded.folder)
    else:
        g = torch.get_rng_state()
        torch.manual_seed(cfg.seed)
        fusion = FusionUNet().eval().requires_grad_(False)
        torch.set_rng_state(g)
        desc = f"random (seed {cfg.seed}, default architecture; speed only: {folder} has no weights)"
    return vae, fusion, {"vae": str(vae_dir), "fusion": desc, "fusion_config": fusion.cfg.to_dict()}


def _plan(cfg: BenchConfig) -> tuple[list[tuple[str, str, str]], list[dict]]:
    """``[(backend, device, precision)]`` to run and the skipped combinations with the reason."""
    resolve_precision = load("focusstack.backends.torch_backend:resolve_precision")  # imports torch

    backends = cfg.backends or (("torch", "onnx") if onnx_available() else ("torch",))
    plan, skipped = [], []
    for backend in dict.fromkeys(backends):
        if backend == "onnx":
            if not onnx_available():
                raise missing_onnx_error()
            device, _ = resolve_onnx_device(cfg.device)
        else:
            device = resolve_device(cfg.device)
        for precision in dict.fromkeys(cfg.precisions):
            reason = None
            if backend == "onnx" and precision != "fp32":
                reason = "the ONNX backend runs fp32 only"
            elif backend == "torch":
                try:
                    resolve_precision(precision, device)
                except ConfigError as exc:
                    reason = exc.what
            if reason:
                skipped.append({"backend": backend, "device": device, "precision": precision, "reason": reason})
            else:
                plan.append((backend, device, precision))
    if not plan:
        raise ConfigError(
            "nothing to measure: every --backend/--precision combination is unsupported",
            expected="at least one of torch fp32/bf16 (CPU), torch fp16 (CUDA), onnx fp32",
            actual="; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in skipped),
            fix="add --precision fp32",
        )
    return plan, skipped


def _synthetic_frames(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """``(k, 3, size, size)`` float32 in [0, 1]: smooth gradients plus 8 px texture."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([x, y, 1 - x * y])
    out = np.empty((k, 3, size, size), np.float32)
    for i in range(k):
        tex = rng.random((3, size // 8, size // 8), dtype=np.float32)
        out[i] = 0.7 * base + 0.3 * np.repeat(np.repeat(tex, 8, 1), 8, 2)
    return out


def _full_frames(rng: np.random.Generator, size: int, k: int = MAX_FRAMES) -> list[np.ndarray]:
    """``k x (size, size, 3)`` float32 frames for the full-size run (as benchmarks/fuse_4k.py)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([x, y, 1 - x * y], -1)
    del x, y
    frames = []
    for _ in range(k):
        tex = rng.random((size // 8, size // 8, 3), dtype=np.float32)
        f = np.repeat(np.repeat(tex, 8, 0), 8, 1)
        f *= 0.3
        f += 0.7 * base
        frames.append(f)
    return frames


# ---- baseline ---------------------------------------------------------------------------------


def load_baseline(path: Path) -> list[dict]:
    """Entries of a previous ``bench --json`` output (or a bare list of entries)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--baseline {path} cannot be read: {exc.strerror or exc}",
                         fix="pass the JSON written by an earlier `focusstack bench --json > FILE`") from None
    except ValueError as exc:
        raise UsageError(f"--baseline {path} is not JSON: {exc}",
                         fix="pass the JSON written by an earlier `focusstack bench --json > FILE`") from None
    entries = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and all(k in e for k in KEY_FIELDS) and isinstance(e.get("images_per_s"), (int, float))
        for e in entries
    ):
        raise UsageError(
            f"--baseline {path} has no list of bench entries",
            expected=f"{{\"entries\": [{{{', '.join(KEY_FIELDS)}, images_per_s, ...}}]}}",
            actual=f"{type(entries).__name__}",
            fix="pass the JSON written by `focusstack bench --json` (schema in docs/bench.md)",
        )
    return entries


def _key(e: dict) -> tuple:
    return tuple(e[k] for k in KEY_FIELDS)


def compare_to_baseline(entries: list[dict], baseline: list[dict], max_regression: float) -> dict:
    """Every entry whose images/s is more than ``max_regression`` percent below its baseline entry."""
    base = {_key(e): e for e in baseline}
    regressions, compared = [], []
    for e in entries:
        b = base.get(_key(e))
        if b is None:
            continue
        change = 100.0 * (e["images_per_s"] - b["images_per_s"]) / b["images_per_s"] if b["images_per_s"] else 0.0
        row = {k: e[k] for k in KEY_FIELDS} | {
            "baseline_images_per_s": b["images_per_s"],
            "images_per_s": e["images_per_s"],
            "change_pct": round(change, 2),
        }
        compared.append(row)
        if change < -max_regression:
            regressions.append(row)
    return {"max_regression_pct": max_regression, "compared": compared, "regressions": regressions}


def describe_regression(r: dict) -> str:
    return (f"{r['backend']} {r['precision']} on {r['device']}, {r['frames']} frames at {r['size']} px: "
            f"{r['images_per_s']:.3g} images/s, baseline {r['baseline_images_per_s']:.3g} ({r['change_pct']:+.1f}%)")


# ---- plot -------------------------------------------------------------------------------------


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401  (optional extra: matplotlib)
    except ImportError:
        return False
    return True


def check_plot_path(path: Path) -> None:
    """Fail before any measurement when the plot cannot be written."""
    path = Path(path)
    allowed = PLOT_SUFFIXES_MPL if _has_matplotlib() else PLOT_SUFFIXES_PIL
    if path.suffix.lower() not in allowed:
        raise UsageError(
            f"--plot {path}: unsupported file type {path.suffix or '(none)'}",
            expected=" | ".join(allowed) + ("" if _has_matplotlib() else " (svg and pdf need matplotlib: the bench extra)"),
            actual=path.suffix or "no extension",
            fix=f"pass --plot {path.with_suffix('.png')}",
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--plot {path}: the folder {parent} does not exist", fix=f"mkdir -p {parent}")


def _series(entries: list[dict]) -> tuple[list[int], dict[str, dict[int, float]]]:
    frames = sorted({e["frames"] for e in entries})
    series: dict[str, dict[int, float]] = {}
    for e in entries:
        series.setdefault(f"{e['backend']} {e['precision']} ({e['device']})", {})[e["frames"]] = e["images_per_s"]
    return frames, series


def write_plot(result: BenchResult, path: Path) -> str:
    """Grouped bar chart (VAEEDOF Figure 6): images/s against the number of input frames, one bar
    per backend/precision in each group. matplotlib when installed, else a plain Pillow PNG.
    Returns the tool used."""
    frames, series = _series(result.entries)
    size = result.config["size"]
    title = f"{size}x{size} images per second ({result.host['cpu']})"
    if _has_matplotlib():
        import matplotlib  # optional extra: matplotlib (plots)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # optional extra: matplotlib

        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / max(1, len(series))
        for i, (label, vals) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(frames))]
            bars = ax.bar(xs, [vals.get(k, 0.0) for k in frames], width, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(frames)), [str(k) for k in frames])
        ax.set_xlabel("number of input images")
        ax.set_ylabel("images / s (higher is better)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return "matplotlib"
    _pil_bar_chart(frames, series, title, Path(path))
    return "pillow"


def _pil_bar_chart(frames: list[int], series: dict[str, dict[int, float]], title: str, path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
        small = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    w, h = 960, 540
    left, right, top, bottom = 80, 20, 50 + 20 * ((len(series) + 2) // 3), 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 10), title, fill="black", font=font)
    for i, label in enumerate(series):
        x, y = left + (i % 3) * 290, 32 + 20 * (i // 3)
        d.rectangle([x, y + 2, x + 14, y + 14], fill=colors[i % len(colors)])
        d.text((x + 20, y), label, fill="black", font=small)
    vmax = max((v for vals in series.values() for v in vals.values()), default=1.0) or 1.0
    step = 10 ** np.floor(np.log10(vmax / 5)) if vmax > 0 else 1
    for m in (1, 2, 5, 10):
        if vmax / (step * m) <= 6:
            step *= m
            break
    ymax = step * np.ceil(vmax * 1.1 / step)
    x0, x1, y0, y1 = left, w - right, h - bottom, top

    def ypix(v: float) -> float:
        return y0 - (y0 - y1) * v / ymax

    t = 0.0
    while t <= ymax + 1e-9:
        y = ypix(t)
        d.line([x0, y, x1, y], fill="#dddddd")
        d.text((x0 - 8, y), f"{t:g}", fill="black", font=small, anchor="rm")
        t += step
    d.line([x0, y0, x1, y0], fill="black")
    d.line([x0, y0, x0, y1], fill="black")
    group = (x1 - x0) / max(1, len(frames))
    bar = 0.8 * group / max(1, len(series))
    for j, k in enumerate(frames):
        gx = x0 + j * group + 0.1 * group
        for i, vals in enumerate(series.values()):
            if k not in vals:
                continue
            bx = gx + i * bar
            d.rectangle([bx, ypix(vals[k]), bx + bar - 2, y0], fill=colors[i % len(colors)])
            d.text((bx + bar / 2, ypix(vals[k]) - 2), f"{vals[k]:.2f}", fill="black", font=small, anchor="mb")
        d.text((x0 + (j + 0.5) * group, y0 + 8), str(k), fill="black", font=font, anchor="mt")
    d.text(((x0 + x1) / 2, h - 22), "number of input images", fill="black", font=font, anchor="mt")
    d.text((8, y1 - 30), "images / s", fill="black", font=small)
    img.save(path, format="PNG")


# ---- tables -----------------------------------------------------------------------------------


def table_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per frame count, one column per backend/precision/device."""
    frames, series = _series(result.entries)
    header = ["frames"] + list(series)
    rows = [[str(k)] + [f"{vals[k]:.3f}" if k in vals else "-" for vals in series.values()] for k in frames]
    return header, rows


def to_markdown(result: BenchResult) -> str:
    header, rows = table_rows(result)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ---- the job ----------------------------------------------------------------------------------


def run_bench(cfg: BenchConfig = BenchConfig()) -> BenchResult:
    """Measure every (backend, device, precision, frames) of ``cfg``; see the module docstring.

    Cheap checks first (options, plot path, baseline file, backends installed), then the
    weights, then the measurements. Regressions against ``cfg.baseline`` are listed in
    ``result.baseline["regressions"]``; the caller decides the exit code.
    """
    import torch

    if cfg.plot is not None:
        check_plot_path(cfg.plot)
    baseline = load_baseline(cfg.baseline) if cfg.baseline is not None else None
    plan, skipped = _plan(cfg)
    vae, fusion, weights = _load_models(cfg)
    result = BenchResult(
        schema=SCHEMA,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=_host(),
        config=cfg.to_dict(),
        weights=weights,
        skipped=skipped,
    )
    torch_threads = torch.get_num_threads()
    rng = np.random.default_rng(cfg.seed)
    inputs = {k: _synthetic_frames(rng, k, cfg.size) for k in cfg.frames}
    calls = len(plan) * len(cfg.frames) * (cfg.warmup + cfg.repeats)
    done = 0
    backends = {}
    try:
        with progress_bar(f"bench {cfg.size} px", enabled=cfg.show_progress) as update:
            update(0, calls)
            for backend_name, device, precision in plan:
                t = time.perf_counter()
                backend = make_backend(backend_name, vae, fusion, device=device, precision=precision,
                                       threads=cfg.threads, cache=cfg.onnx_cache)
                setup_s = time.perf_counter() - t
                backends[(backend_name, device, precision)] = backend
                threads = torch.get_num_threads() if backend_name == "torch" else cfg.threads
                for k in cfg.frames:
                    x = inputs[k]
                    scoped = _reset_peak()
                    for _ in range(cfg.warmup):
                        backend.fuse_patch(x)
                        done += 1
                        update(done, calls)
                    times = []
                    for _ in range(cfg.repeats):
                        t = time.perf_counter()
                        backend.fuse_patch(x)
                        times.append(time.perf_counter() - t)
                        done += 1
                        update(done, calls)
                    result.entries.append({
                        "backend": backend_name,
                        "device": backend.device,
                        "precision": backend.precision,
                        "frames": k,
                        "size": cfg.size,
                        "threads": threads,
                        "warmup": cfg.warmup,
                        "repeats": cfg.repeats,
                        **_stats(times),
                        "peak_memory_mb": round(_maxrss_mb(), 1),
                        "peak_memory_scope": "measurement" if scoped else "process",
                        "setup_s": round(setup_s, 2),
                    })
                    setup_s = 0.0
            if cfg.full:
                frames = _full_frames(rng, cfg.full_size)
                for (backend_name, device, precision), backend in backends.items():
                    engine = VAEEDOFEngine(backend, TileConfig(tile=cfg.tile))
                    scoped = _reset_peak()
                    with progress_bar(f"full {cfg.full_size} px, {backend_name} {precision}",
                                      enabled=cfg.show_progress) as full_update:
                        t = time.perf_counter()
                        engine.fuse(frames, on_tile=full_update)
                        seconds = time.perf_counter() - t
                    result.full.append({
                        "backend": backend_name,
                        "device": backend.device,
                        "precision": backend.precision,
                        "frames": len(frames),
                        "size": cfg.full_size,
                        "tile": cfg.tile,
                        "seconds": round(seconds, 2),
                        "megapixels_per_s": round(cfg.full_size**2 / 1e6 / seconds, 3),
                        "peak_memory_mb": round(_maxrss_mb(), 1),
                        "peak_memory_scope": "measurement (includes the 7 input frames)" if scoped else "process",
                    })
                del frames
    finally:
        torch.set_num_threads(torch_threads)
    if hasattr(os, "getloadavg"):
        result.host["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    if cfg.plot is not None:
        result.plot = str(cfg.plot)
        result.host["plot_tool"] = write_plot(result, cfg.plot)
    if baseline is not None:
        result.baseline = {"file": str(cfg.baseline), "entries": len(baseline)} | compare_to_baseline(
            result.entries, baseline, cfg.max_regression
        )
    return result


def check_baseline(result: BenchResult) -> None:
    """Raise when the baseline comparison fails: :class:`BenchRegressionError` (exit 1) naming
    every regressed entry, or :class:`UsageError` (exit 2) when no entry matched the baseline
    (a gate that compares nothing must not pass). Call it after printing the result."""
    b = result.baseline
    if b is None:
        return
    if not b["compared"]:
        raise UsageError(
            f"--baseline {b['file']} has no entry matching this run",
            expected=f"entries with the same {', '.join(KEY_FIELDS)}",
            actual=f"{b['entries']} baseline entries, none matching",
            fix="run the bench with the options the baseline was made with",
        )
    if b["regressions"]:
        raise BenchRegressionError(
            f"{len(b['regressions'])} of {len(b['compared'])} entries are more than "
            f"{b['max_regression_pct']:g}% slower than {b['file']}:\n  "
            + "\n  ".join(describe_regression(r) for r in b["regressions"]),
            fix="find what slowed down, or record a new baseline with `focusstack bench --json > FILE`",
        )
