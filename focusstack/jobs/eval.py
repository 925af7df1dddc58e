"""``focusstack eval``: score fused images the way VAEEDOF (Table 1, Figure 4) and the TR paper
(Table 1) do, for one or several methods in one run. :func:`evaluate` is the whole job; the CLI
only parses options into an :class:`EvalConfig`.

Inputs, paired by file stem (the name without its extension):

* predictions: one folder per method (``PRED_DIR``, ``--method NAME=DIR``), one image per stem;
  every method must have the same stems.
* ``--gt DIR``: ``DIR/<stem>.<ext>``, or a render-dataset root (``DIR/samples/<stem>/gt.png``).
* ``--sources DIR``: ``DIR/<stem>/`` holding that stem's frames (natural order, near to far), or
  a render-dataset root (``DIR/samples/<stem>/frame_*.png``).
* ``--masks DIR``: the GT decision mask: ``DIR/<stem>.<ext>`` (white where the first frame is
  sharp), ``DIR/<stem>/`` with one mask per frame, or a render-dataset root
  (``samples/<stem>/mask_*.png``). A method's own decision map is read from
  ``<method dir>/masks/<stem>.<ext>`` when present, else implied from its output and the sources
  (:func:`focusstack.metrics.masks.implied_decision`).

Images are read with :func:`focusstack.io.read_image` (8/16-bit PNG, TIFF, JPEG, RAW) as
``(H, W, 3) float32`` in [0, 1], so 16-bit files are scored at full precision. A metric that
cannot be computed is reported as unavailable with its reason, never as 0 or NaN. The JSON
schema and every metric's definition are in docs/eval.md.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focusstack.backends.device import resolve_device
from focusstack.config import DEFAULT_MAX_PIXELS, DEVICES
from focusstack.errors import ConfigError, FileWriteError, PairingError, UsageError
from focusstack.io import SUPPORTED_EXTENSIONS, check_output, natural_sort, read_image, write_files
from focusstack.lazy import load
from focusstack.metrics.registry import BY_KEY, METRICS, MetricInfo, Unavailable, resolve_metric
from focusstack.progress import progress_bar

SCHEMA = "focusstack-eval/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class EvalInputError(PairingError):
    """Predictions and references that do not pair up: a missing file, sizes that differ (exit 1)."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``eval`` needs; the CLI's defaults are this class's defaults.

    ``methods``: (name, folder) pairs, one per method. ``metrics``: metric keys; empty = every
    metric the given references allow (reference metrics with ``gt``, fusion metrics with
    ``sources``, mIoU with ``masks``). ``difficulty``: compute the per-patch difficulty analysis
    (needs ``gt`` and ``sources``); ``None`` = only when ``plots`` is given.
    """

    methods: tuple[tuple[str, Path], ...] = ()
    gt: Path | None = None
    sources: Path | None = None
    masks: Path | None = None
    metrics: tuple[str, ...] = ()
    csv: Path | None = None
    plots: Path | None = None
    difficulty: bool | None = None
    patch: int = 64
    bins: int = 8
    overwrite: bool = False
    download_weights: bool = False
    download_timeout_s: float = 30.0
    device: str = "cpu"
    threads: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    show_progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.patch, int) or self.patch < 16:
            raise ConfigError("--patch must be at least 16 px", expected="an integer >= 16", actual=repr(self.patch),
                              fix="pass --patch 64 (the default)")
        if not isinstance(self.bins, int) or self.bins < 1:
            raise ConfigError("--bins must be at least 1", expected="an integer >= 1", actual=repr(self.bins),
                              fix="pass --bins 8 (the default)")
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device}: unknown device", expected=" | ".join(DEVICES),
                              actual=repr(self.device), fix="pass --device cpu")
        if self.threads < 0:
            raise ConfigError("--threads must be >= 0", actual=repr(self.threads), fix="pass 0 to keep torch's default")
        if self.download_timeout_s <= 0:
            raise ConfigError("the download timeout must be positive", actual=repr(self.download_timeout_s))
        seen: set[str] = set()
        for name, _ in self.methods:
            if name in seen:
                raise UsageError(f"method name {name!r} is given twice", fix="give each --method a different NAME")
            seen.add(name)

    @property
    def wants_difficulty(self) -> bool:
        return bool(self.plots is not None if self.difficulty is None else self.difficulty)


def parse_method(spec: str) -> tuple[str, Path]:
    """``"NAME=DIR"`` -> (name, folder)."""
    name, sep, folder = str(spec).partition("=")
    name = name.strip()
    if not sep or not folder or not _NAME.match(name):
        raise UsageError(
            f"--method {spec}: not NAME=DIR",
            expected="a name of letters, digits, '.', '_', '+' or '-', then '=', then a folder",
            actual=repr(spec),
            fix="pass e.g. --method vaeedof=out/vaeedof",
        )
    return name, Path(folder)


def select_metrics(config: EvalConfig) -> list[MetricInfo]:
    """The metrics this run computes, in the table's order (see :class:`EvalConfig`)."""
    have = {"reference": config.gt is not None, "fusion": config.sources is not None, "mask": config.masks is not None}
    need = {"reference": "--gt DIR", "fusion": "--sources DIR", "mask": "--masks DIR"}
    if not config.metrics:
        chosen = [m for m in METRICS if have[m.kind]]
        if not chosen:
            raise UsageError("nothing to score against", expected="--gt DIR, --sources DIR or --masks DIR",
                             actual="none of them", fix="pass the GT folder (--gt) and/or the source frames (--sources)")
        return chosen
    chosen = []
    for name in config.metrics:
        info = resolve_metric(name)
        if info is None:
            raise ConfigError(f"--metrics: unknown metric {name!r}", expected=", ".join(m.key for m in METRICS),
                              actual=repr(name), fix="pick names from the list (case and '-'/'_' do not matter)")
        if not have[info.kind]:
            raise UsageError(f"--metrics {info.key} needs {need[info.kind]}", fix=f"pass {need[info.kind]} or drop {info.key}")
        if info not in chosen:
            chosen.append(info)
    return [m for m in METRICS if m in chosen]


# --------------------------------------------------------------------------------------------
# finding files


def _is_dataset(root: Path) -> bool:
    return (root / "samples").is_dir()


def _images_in(folder: Path) -> list[Path]:
    return natural_sort(p for p in folder.iterdir()
                        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_EXTENSIONS)


def _stem_map(folder: Path, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in _images_in(folder):
        if p.stem in out:
            raise EvalInputError(f"{what} {folder}: two files share the stem {p.stem!r} ({out[p.stem].name}, {p.name})",
                                 fix="keep one file per stem")
        out[p.stem] = p
    return out


def _check_dir(path: Path | None, option: str) -> None:
    if path is not None and not path.is_dir():
        raise UsageError(f"{option} {path}: not a folder", expected="an existing folder",
                         actual="missing" if not path.exists() else "a file", fix=f"check the path given to {option}")


def _by_stem(folder: Path, stem: str) -> Path | None:
    for ext in sorted(SUPPORTED_EXTENSIONS):
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def _missing(kind: str, expected: Path, pred: Path, fix: str) -> EvalInputError:
    return EvalInputError(f"{expected}: {kind} for prediction {pred} not found", expected=f"the file {expected}",
                          actual="missing", fix=fix)


def _gt_path(root: Path, stem: str, pred: Path) -> Path:
    if _is_dataset(root):
        p = root / "samples" / stem / "gt.png"
        if not p.is_file():
            raise _missing("ground truth", p, pred, "check that the prediction stems are the dataset's sample ids")
        return p
    p = _by_stem(root, stem)
    if p is None:
        raise _missing("ground truth", root / f"{stem}.png", pred,
                       f"put {stem}.<png|tif|jpg|...> in {root}, or remove {pred.name} from the predictions")
    return p


def _source_paths(root: Path, stem: str, pred: Path) -> list[Path]:
    if _is_dataset(root):
        folder = root / "samples" / stem
        frames = natural_sort(folder.glob("frame_*.png")) if folder.is_dir() else []
    else:
        folder = root / stem
        frames = _images_in(folder) if folder.is_dir() else []
    if not frames:
        raise _missing("source frames", folder, pred, f"put the frames of {stem} in {folder}/")
    return frames


def _mask_paths(root: Path, stem: str, pred: Path) -> list[Path]:
    if _is_dataset(root):
        folder = root / "samples" / stem
        found = natural_sort(folder.glob("mask_*.png")) if folder.is_dir() else []
        if not found:
            raise _missing("GT masks", folder / "mask_00.png", pred, "render the dataset again (it writes mask_*.png)")
        return found
    p = _by_stem(root, stem)
    if p is not None:
        return [p]
    if (root / stem).is_dir() and _images_in(root / stem):
        return _images_in(root / stem)
    raise _missing("GT mask", root / f"{stem}.png", pred, f"put {stem}.png (white where the first frame is sharp) in {root}")


# --------------------------------------------------------------------------------------------
# result


@dataclass
class EvalResult:
    metrics: list[MetricInfo]
    methods: list[dict[str, str]]
    images: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    unavailable: dict[str, str]
    difficulty: dict[str, Any] | None = None
    written: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "metrics": [m.to_dict() for m in self.metrics],
            "methods": self.methods,
            "images": self.images,
            "summary": self.summary,
            "unavailable": self.unavailable,
            "difficulty": self.difficulty,
            "written": self.written,
            "seconds": round(self.seconds, 3),
        }


def _clean(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# the job


def evaluate(config: EvalConfig) -> EvalResult:
    """Score every method's predictions; write the CSV and plots the config asks for.

    Raises:
        UsageError / ConfigError: bad options (no method, nothing to score against, a metric that
            needs a reference that was not given, an existing output without ``overwrite``).
        EvalInputError: a prediction without its GT / sources / mask, sizes that differ, methods
            with different stems.
        ImageReadError: an image that cannot be decoded.
        MissingDependencyError: reference metrics asked for without piq/torchvision installed.
    """
    import time

    import torch

    # the metrics import torch (and piq): loaded when a run starts, not for `eval --help`
    patches = load("focusstack.metrics.difficulty:patches")
    ReferenceScorer = load("focusstack.metrics.reference:ReferenceScorer")  # noqa: N806

    t0 = time.perf_counter()
    if not config.methods:
        raise UsageError("no predictions given", fix="pass PRED_DIR and/or --method NAME=DIR")
    for name, folder in config.methods:
        _check_dir(folder, f"--method {name}=" if name else "PRED_DIR")
    _check_dir(config.gt, "--gt")
    _check_dir(config.sources, "--sources")
    _check_dir(config.masks, "--masks")
    infos = select_metrics(config)
    keys = [m.key for m in infos]
    want_diff = config.wants_difficulty
    if want_diff and (config.gt is None or config.sources is None):
        raise UsageError("the difficulty analysis (--plots) needs --gt and --sources",
                         fix="pass both, or drop --plots")
    ref_keys = [m.key for m in infos if m.kind == "reference"]
    patch_keys = [k for k in ref_keys if BY_KEY[k].min_size <= config.patch] if want_diff else []
    if config.plots is not None and not patch_keys:
        raise UsageError(f"--plots: no selected reference metric works on {config.patch} px patches, nothing to plot",
                         expected="a reference metric such as psnr, ssim or lpips (MS-SSIM and IW-SSIM need >= 161 px)",
                         actual=", ".join(ref_keys) or "no reference metric", fix="add one to --metrics, or raise --patch")
    stems_by_method, plan = _pair(config)
    protected = _input_files(config, stems_by_method, plan)
    plot_paths = _check_outputs(config, patch_keys, protected)

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    scorer = ReferenceScorer(ref_keys, device=device, allow_download=config.download_weights,
                             download_timeout_s=config.download_timeout_s)
    scorer.prepare()

    images: list[dict[str, Any]] = []
    diff_values: list[np.ndarray] = []
    patch_scores: dict[str, dict[str, list[np.ndarray]]] = {n: {k: [] for k in patch_keys} for n, _ in config.methods}
    total, done = len(plan) * len(config.methods), 0
    with progress_bar("eval", enabled=config.show_progress) as update:
        update(0, total)
        for entry in plan:
            refs = _load_refs(entry, config, want_diff)
            if refs.difficulty is not None:
                diff_values.append(refs.difficulty)
            for name, folder in config.methods:
                pred_path = stems_by_method[name][refs.stem]
                pred = _read(pred_path, config)
                scores, reasons = _score(pred, pred_path, folder, refs, keys, scorer, config)
                if patch_keys:
                    pp = patches(_chw(pred), config.patch)
                    gp = patches(_chw(refs.gt), config.patch)
                    for k, v in scorer.score(pp, gp).items():
                        if k in patch_keys:
                            patch_scores[name][k].append(np.full(len(pp), np.nan) if isinstance(v, Unavailable) else v.numpy())
                images.append({
                    "method": name,
                    "stem": refs.stem,
                    "pred": str(pred_path),
                    "gt": str(refs.gt_path) if refs.gt_path is not None else None,
                    "sources": [str(p) for p in refs.src_paths],
                    "scores": scores,
                    "unavailable": reasons,
                })
                done += 1
                update(done, total)

    unavailable = {}
    for k in keys:
        rs = [r["unavailable"][k] for r in images if k in r["unavailable"]]
        if rs and len(rs) == len(images):
            unavailable[k] = rs[0]
    result = EvalResult(
        metrics=infos,
        methods=[{"name": n, "dir": str(d)} for n, d in config.methods],
        images=images,
        summary=_summarise(images, infos, config),
        unavailable=unavailable,
    )
    if want_diff:
        result.difficulty = _difficulty_table(diff_values, patch_scores, patch_keys, config)
        for k, reason in scorer.unavailable.items():
            result.difficulty["unavailable"][k] = reason
        for k in ref_keys:
            if k not in patch_keys:
                result.difficulty["unavailable"][k] = f"patch too small (needs >= {BY_KEY[k].min_size} px, --patch {config.patch})"
    files: list[tuple[Path, bytes]] = []
    if want_diff and config.plots is not None:
        files += _plots(result.difficulty, plot_paths, config)
    if config.csv is not None:
        files.append((config.csv, _csv_bytes(images, keys)))
    if files:  # all or none, never over an input
        write_files(files, overwrite=config.overwrite, protected=protected, error_class=FileWriteError)
        result.written += [str(p) for p, _ in files]
    result.seconds = time.perf_counter() - t0
    return result


def _input_folders(config: EvalConfig) -> list[tuple[str, Path]]:
    """Every folder eval reads images from, with the option that names it."""
    out: list[tuple[str, Path]] = []
    for name, folder in config.methods:
        out.append((f"--method {name}", folder))
        out.append((f"--method {name} (its masks/)", folder / "masks"))
    for option, root in (("--gt", config.gt), ("--sources", config.sources), ("--masks", config.masks)):
        if root is not None:
            out.append((option, root))
    return out


def _input_files(config: EvalConfig, stems_by_method: dict[str, dict[str, Path]], plan: list) -> list[Path]:
    """Every image this run reads: predictions, GT, source frames, masks, methods' own masks."""
    files: list[Path] = [p for smap in stems_by_method.values() for p in smap.values()]
    for _, gt, srcs, masks in plan:
        files += ([gt] if gt is not None else []) + list(srcs) + list(masks)
    for _, folder in config.methods:
        if (folder / "masks").is_dir():
            files += _images_in(folder / "masks")
    return files


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _check_outputs(config: EvalConfig, patch_keys: list[str], protected: list[Path] = ()) -> dict[str, Path]:
    """Refuse existing output files (without ``overwrite``) and any output that is an input
    (even with ``overwrite``) before any work; the plot paths."""
    if config.csv is not None:
        check_output(config.csv, overwrite=config.overwrite, protected=protected, error_class=FileWriteError)
    plot_paths: dict[str, Path] = {}
    if config.plots is not None and patch_keys:
        if config.plots.exists() and not config.plots.is_dir():
            raise UsageError(f"--plots {config.plots}: not a folder", fix="give a folder (it is created when missing)")
        for option, folder in _input_folders(config):
            if _same_folder(config.plots, folder):
                raise UsageError(
                    f"--plots {config.plots} is the {option} folder",
                    expected="a folder eval does not read images from",
                    actual=f"{option} {folder}",
                    fix="give --plots a folder of its own (its PNGs would be read as images on the next run)",
                )
        for k in patch_keys:
            plot_paths[k] = config.plots / f"difficulty_{k}.png"
            if config.plots.is_dir():
                check_output(plot_paths[k], overwrite=config.overwrite, protected=protected, error_class=FileWriteError)
        try:
            config.plots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileWriteError(f"--plots {config.plots}: cannot create the folder", actual=exc.strerror or str(exc),
                                 fix="choose a writable location for --plots") from None
    return plot_paths


_Entry = tuple[str, "Path | None", list[Path], list[Path]]


def _pair(config: EvalConfig) -> tuple[dict[str, dict[str, Path]], list[_Entry]]:
    """Stems per method, and per stem its GT / frames / masks; every missing file is found
    here, before any pixel is decoded."""
    stems_by_method = {name: _stem_map(folder, f"method {name}") for name, folder in config.methods}
    first = config.methods[0][0]
    stems = list(stems_by_method[first])
    if not stems:
        raise UsageError(f"{config.methods[0][1]}: no images", expected=f"files with one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}",
                         actual="none", fix="point PRED_DIR / --method at the folder of fused images")
    for name, smap in stems_by_method.items():
        if set(smap) != set(stems):
            only_a = sorted(set(stems) - set(smap))[:5]
            only_b = sorted(set(smap) - set(stems))[:5]
            raise EvalInputError(f"methods {first} and {name} do not hold the same images",
                                 expected="the same file stems in every method folder",
                                 actual=f"only in {first}: {only_a or '-'}; only in {name}: {only_b or '-'}",
                                 fix="compare methods on the same images")
    plan: list[_Entry] = []
    for stem in stems:
        pred0 = stems_by_method[first][stem]
        plan.append((
            stem,
            _gt_path(config.gt, stem, pred0) if config.gt is not None else None,
            _source_paths(config.sources, stem, pred0) if config.sources is not None else [],
            _mask_paths(config.masks, stem, pred0) if config.masks is not None else [],
        ))
    return stems_by_method, plan


def _read(path: Path, config: EvalConfig) -> np.ndarray:
    return read_image(path, max_pixels=config.max_pixels).pixels


def _chw(img: np.ndarray):  # noqa: ANN202 - torch is imported lazily
    import torch

    return torch.from_numpy(img).permute(2, 0, 1)


def _same_size(a: np.ndarray, b: np.ndarray, pa: Path, pb: Path, what: str) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise EvalInputError(f"{pa}: size differs from its {what} {pb}",
                             expected=f"{b.shape[1]}x{b.shape[0]} px", actual=f"{a.shape[1]}x{a.shape[0]} px",
                             fix="score outputs at the size of their references (no resizing is done); "
                                 "`focusstack fuse` crops aligned stacks: fuse with --keep-size or --no-align to compare with a GT")


@dataclass
class _Refs:
    """One stem's references, read once for every method."""

    stem: str
    gt_path: Path | None
    gt: np.ndarray | None
    src_paths: list[Path]
    srcs: list[np.ndarray]
    gt_labels: np.ndarray | None
    difficulty: np.ndarray | None


def _load_refs(entry: _Entry, config: EvalConfig, want_diff: bool) -> _Refs:
    import torch

    difficulty = load("focusstack.metrics.difficulty:difficulty")
    labels_from_masks = load("focusstack.metrics.masks:labels_from_masks")

    stem, gt_path, src_paths, mask_paths = entry
    gt = _read(gt_path, config) if gt_path is not None else None
    srcs = [_read(p, config) for p in src_paths]
    for p, s in zip(src_paths[1:], srcs[1:]):
        _same_size(s, srcs[0], p, src_paths[0], "first frame")
    if gt is not None and srcs:
        _same_size(srcs[0], gt, src_paths[0], gt_path, "GT")  # type: ignore[arg-type]
    gt_labels = None
    if mask_paths:
        masks = [_read(p, config).mean(-1) for p in mask_paths]
        ref, ref_path = (gt, gt_path) if gt is not None else ((srcs[0], src_paths[0]) if srcs else (masks[0], mask_paths[0]))
        for p, m in zip(mask_paths, masks):
            _same_size(m, ref, p, ref_path, "reference")  # type: ignore[arg-type]
        gt_labels = labels_from_masks(masks)
    diff = None
    if want_diff:
        assert gt is not None
        diff = difficulty(_chw(gt), torch.stack([_chw(s) for s in srcs]), config.patch).numpy()
    return _Refs(stem, gt_path, gt, src_paths, srcs, gt_labels, diff)


def _score(pred: np.ndarray, pred_path: Path, folder: Path, refs: _Refs, keys: list[str], scorer, config: EvalConfig,  # noqa: ANN001
           ) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of one prediction: key -> score or None, and key -> reason for each None."""
    fm = load("focusstack.metrics:fusion")
    masks = load("focusstack.metrics:masks")
    decision_miou, implied_decision, labels_from_masks, miou = (
        masks.decision_miou, masks.implied_decision, masks.labels_from_masks, masks.miou)

    if refs.gt is not None:
        _same_size(pred, refs.gt, pred_path, refs.gt_path, "GT")  # type: ignore[arg-type]
    if refs.srcs:
        _same_size(pred, refs.srcs[0], pred_path, refs.src_paths[0], "source frame")
    scores: dict[str, float | None] = {k: None for k in keys}
    reasons: dict[str, str] = {}

    def put(k: str, v: float) -> None:
        scores[k] = _clean(v)
        if scores[k] is None:
            reasons[k] = f"{BY_KEY[k].label} gave a non-finite value"

    if scorer.keys:
        assert refs.gt is not None
        for k, v in scorer.score(_chw(pred)[None], _chw(refs.gt)[None]).items():
            if isinstance(v, Unavailable):
                reasons[k] = str(v)
            else:
                put(k, float(v[0]))
    for k, fn in (("q_mi", fm.q_mi), ("q_abf", fm.q_abf), ("q_y", fm.q_y)):
        if k in keys:
            try:
                put(k, fn(refs.srcs, pred))
            except Unavailable as exc:
                reasons[k] = str(exc)
    if "miou" in keys:
        assert refs.gt_labels is not None
        own = _by_stem(folder / "masks", refs.stem) if (folder / "masks").is_dir() else None
        if own is not None:
            m = _read(own, config).mean(-1)
            _same_size(m, pred, own, pred_path, "prediction")
            labels = labels_from_masks([m])
        elif refs.srcs:
            labels = implied_decision(refs.srcs, pred)
        else:
            labels = None
            reasons["miou"] = (f"no decision map for {pred_path.name}: put it in {folder / 'masks'}/{refs.stem}.png "
                               "or pass --sources to infer it")
        if labels is not None:
            try:
                put("miou", decision_miou(labels, refs.gt_labels, refs.srcs) if refs.srcs else miou(labels, refs.gt_labels))
            except Unavailable as exc:
                reasons["miou"] = str(exc)
    return scores, reasons


def _summarise(images: list[dict], infos: list[MetricInfo], config: EvalConfig) -> dict:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, _ in config.methods:
        rows = [r for r in images if r["method"] == name]
        per: dict[str, dict[str, Any]] = {}
        for m in infos:
            vals = [r["scores"][m.key] for r in rows if r["scores"][m.key] is not None]
            reason = next((r["unavailable"][m.key] for r in rows if m.key in r["unavailable"]), None)
            per[m.key] = {
                "mean": float(np.mean(vals)) if vals else None,
                "n": len(vals),
                "of": len(rows),
                "unavailable": reason if not vals else (f"{len(rows) - len(vals)} image(s): {reason}" if reason else None),
            }
        out[name] = per
    return out


def _difficulty_table(diff_values: list[np.ndarray], patch_scores: dict, patch_keys: list[str], config: EvalConfig) -> dict:
    d = np.concatenate(diff_values) if diff_values else np.zeros(0)
    hi = float(d.max()) if d.size else 1.0
    hi = hi if hi > 0 else 1e-6
    edges = np.linspace(0.0, hi, config.bins + 1)
    idx = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, config.bins - 1)
    counts = np.bincount(idx, minlength=config.bins) if d.size else np.zeros(config.bins, dtype=np.int64)
    methods: dict[str, dict[str, list[float | None]]] = {}
    for name, per in patch_scores.items():
        methods[name] = {}
        for k in patch_keys:
            if not per[k]:
                continue
            v = np.concatenate(per[k])
            if not np.isfinite(v).any():
                continue
            means = []
            for b in range(config.bins):
                sel = v[(idx == b) & np.isfinite(v)]
                means.append(float(sel.mean()) if sel.size else None)
            methods[name][k] = means
    return {
        "definition": "difficulty = 1 - max_k SSIM(GT patch, frame_k patch)",
        "patch": config.patch,
        "patches": int(d.size),
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "methods": methods,
        "unavailable": {},
    }


def _plots(diff: dict, plot_paths: dict[str, Path], config: EvalConfig) -> list[tuple[Path, bytes]]:
    import matplotlib  # optional extra: matplotlib (plots)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional extra: matplotlib

    edges = np.asarray(diff["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    counts = np.asarray(diff["counts"], dtype=float)
    sizes = 15 + 250 * counts / max(counts.max(), 1.0)
    written = []
    for k, path in plot_paths.items():
        series = {n: per[k] for n, per in diff["methods"].items() if k in per}
        if not series:
            continue
        info = BY_KEY[k]
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for n, means in series.items():
            ok = [i for i, v in enumerate(means) if v is not None]
            if not ok:
                continue
            xs, ys = centres[ok], [means[i] for i in ok]
            line = ax.plot(xs, ys, "-", alpha=0.6, label=n)[0]
            ax.scatter(xs, ys, s=sizes[ok], color=line.get_color(), alpha=0.8, edgecolors="none")
        ax.set_xlabel(f"difficulty: 1 - max_k SSIM(GT, frame_k), {diff['patch']} px patches")
        ax.set_ylabel(f"{info.label} {'(higher is better)' if info.higher_is_better else '(lower is better)'}")
        ax.set_title(f"{info.label} against patch difficulty ({diff['patches']} patches; point size = count)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        written.append((path, buf.getvalue()))
    return written


def _csv_bytes(images: list[dict], keys: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "stem", "pred", *keys])
    for r in images:
        w.writerow([r["method"], r["stem"], r["pred"], *("" if r["scores"][k] is None else repr(r["scores"][k]) for k in keys)])
    return buf.getvalue().encode()
