"""Rendering a whole dataset to disk: samples, manifest, resume, local worker processes, Ray.

Layout (see docs/render-dataset.md)::

    OUTDIR/manifest.json
    OUTDIR/samples/<id>/frame_00.png ... frame_K.png   16-bit sRGB, near to far
    OUTDIR/samples/<id>/gt.png                          16-bit sRGB, all in focus
    OUTDIR/samples/<id>/mask_00.png ... mask_K.png      8-bit, 255 where that frame is sharpest
    OUTDIR/samples/<id>/depth.tiff                      float32 metres, visible depth in the GT
    OUTDIR/samples/<id>/matte_00.png ...                8-bit sharp matte of each subject plane
    OUTDIR/samples/<id>/meta.json                       written last: the sample is finished
"""

from __future__ import annotations

import errno
import io
import json
import multiprocessing as mp
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focusstack.errors import FileWriteError, UsageError
from focusstack.io.png16 import png_bytes, to_uint8, to_uint16
from focusstack.io.writers import write_bytes_checked
from focusstack.rendering.blender import check_blender, render_blender_scene
from focusstack.rendering.config import RenderConfig
from focusstack.rendering.sampling import Pools, build_pools, sample_scene
from focusstack.rendering.scene import Scene
from focusstack.rendering.sources import sample_split
from focusstack.rendering.thinlens import RenderResult, render_scene

FORMAT = "focusstack-render/1"
#: Equivalent Gaussian of a disc of diameter CoC: same second moment per axis, sigma = CoC / 4.
SIGMA_FROM_COC = 0.25
SIGMA_RULE = "sigma_px = coc_px / 4 (per-axis second moment of a uniform disc of diameter coc_px)"


def sample_id(index: int) -> str:
    return f"{index:06d}"


# --------------------------------------------------------------------------------------------
# writing


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file: every byte checked, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_bytes_checked(tmp, data)  # every byte, or ENOSPC
        os.replace(tmp, path)
    except BaseException as exc:  # also Ctrl-C: never leave a temporary file behind
        try:
            tmp.unlink()
        except OSError:
            pass
        if not isinstance(exc, OSError):
            raise
        raise _write_error(path, exc) from None


def _write_error(path: Path, exc: OSError) -> FileWriteError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FileWriteError(f"cannot write {path}: the disk is full", expected=f"free space in {path.parent}",
                              actual=reason, fix="free disk space, then rerun the same command (finished samples are kept)")
    if exc.errno == errno.EROFS:
        return FileWriteError(f"cannot write {path}: the folder is on a read-only file system", actual=reason,
                              fix="render into a folder on a writable disk")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FileWriteError(f"cannot write {path}: permission denied", expected="a folder you may write to",
                              actual=reason, fix=f"choose another OUTDIR, or fix the permissions of {path.parent} (chmod u+w)")
    return FileWriteError(f"cannot write {path}", expected="a writable folder with free space", actual=reason,
                          fix="check the output folder's permissions and free disk space")


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode()


def _tiff_bytes(depth: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, depth.astype(np.float32), compression="zlib", metadata=None)
    return buf.getvalue()


def _meta(config: RenderConfig, scene: Scene, result: RenderResult, facts: dict) -> dict:
    cam = scene.camera
    planes = []
    n_sub = sum(1 for p in scene.planes if not p.fill_view)
    for j, p in enumerate(scene.planes):
        z0, z1 = p.depth_range_m()
        entry = {
            "index": j,
            "name": p.name,
            "kind": "background" if p.fill_view else "subject",
            "source": p.source,
            "distance_m": p.distance_m,
            "depth_range_m": [z0, z1],
            "matte": None if p.fill_view else f"matte_{j:02d}.png",
        }
        if not p.fill_view:
            entry.update(
                center_m=list(p.center_m),
                size_m=[2 * p.half_size_m[0], 2 * p.half_size_m[1]],
                rotation_deg=p.rotation_deg,
                tilt_x_deg=p.tilt_x_deg,
                tilt_y_deg=p.tilt_y_deg,
            )
        entry.update(p.extra)
        planes.append(entry)
    frames = []
    for k, s in enumerate(scene.focus_distances_m):
        coc = [float(v) for v in result.coc_px[k]]
        frames.append(
            {
                "file": f"frame_{k:02d}.png",
                "mask": f"mask_{k:02d}.png",
                "focus_distance_m": float(s),
                "focus_plane": k,
                "coc_px": coc,
                "sigma_px": [c * SIGMA_FROM_COC for c in coc],
                "coc_range_px": [[float(a), float(b)] for a, b in result.coc_range_px[k]],
            }
        )
    return {
        "format": FORMAT,
        "id": sample_id(facts["index"]),
        "index": facts["index"],
        "split": facts["split"],
        "seed": config.seed,
        "engine": config.engine,
        "frame_order": "near_to_far",
        "n_frames": len(frames),
        "n_subjects": n_sub,
        "camera": {
            "focal_length_mm": cam.focal_mm,
            "f_number": cam.fnumber,
            "sensor_width_mm": cam.sensor_width_mm,
            "resolution_px": cam.resolution,
            "pixel_pitch_mm": cam.pitch_mm,
            "aperture_diameter_mm": cam.aperture_mm,
        },
        "lighting": facts["lighting"],
        "sigma_rule": SIGMA_RULE,
        "coc_formula": "coc_mm = f^2 / (N (S_focus - f)) * |S - S_focus| / S; coc_px = coc_mm / pixel_pitch_mm",
        "render_margin_px": result.margin,
        "gt": "gt.png",
        "depth": "depth.tiff",
        "planes": planes,
        "frames": frames,
    }


def render_sample(outdir: Path, config: RenderConfig, index: int, pools: Pools | None = None) -> dict:
    """Render sample ``index`` into ``outdir/samples/<id>/`` unless its meta.json exists.

    Returns a short record for the manifest (``skipped`` tells whether it was already there).
    """
    outdir = Path(outdir)
    sdir = outdir / "samples" / sample_id(index)
    meta_path = sdir / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            return _record(meta, skipped=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged meta.json: render again
    if pools is None:
        pools = build_pools(config)
    scene, facts = sample_scene(config, index, pools)
    blender_info = None
    if config.engine == "blender":
        result, blender_info = render_blender_scene(
            scene, seed=config.seed, index=index, samples=config.cycles_samples,
            denoise=config.cycles_denoise, threads=config.threads, python=config.blender_python,
        )
    else:
        result = render_scene(scene, device=config.device, coc_tolerance_px=config.coc_tolerance_px)
    sdir.mkdir(parents=True, exist_ok=True)
    lvl = config.png_compression
    for k in range(result.frames.shape[0]):
        _atomic_write(sdir / f"frame_{k:02d}.png", png_bytes(to_uint16(result.frames[k]), lvl))
        _atomic_write(sdir / f"mask_{k:02d}.png", png_bytes(result.masks[k].astype(np.uint8) * 255, max(lvl, 1)))
    _atomic_write(sdir / "gt.png", png_bytes(to_uint16(result.gt), lvl))
    _atomic_write(sdir / "depth.tiff", _tiff_bytes(result.depth))
    for j, p in enumerate(scene.planes):
        if not p.fill_view:
            _atomic_write(sdir / f"matte_{j:02d}.png", png_bytes(to_uint8(result.mattes[j]), max(lvl, 1)))
    meta = _meta(config, scene, result, facts)
    if blender_info is not None:
        meta["blender"] = {k: v for k, v in blender_info.items() if k != "timings"}  # no timings: same bytes
    _atomic_write(meta_path, _json_bytes(meta))  # last: marks the sample finished
    return _record(meta, skipped=False)


def _record(meta: dict, *, skipped: bool) -> dict:
    return {
        "id": meta["id"],
        "index": meta["index"],
        "split": meta["split"],
        "path": f"samples/{meta['id']}",
        "n_frames": meta["n_frames"],
        "sources": [p["source"] for p in meta["planes"]],
        "skipped": skipped,
    }


# --------------------------------------------------------------------------------------------
# the dataset


def _manifest_path(outdir: Path) -> Path:
    return outdir / "manifest.json"


def _damaged(path: Path, reason: str) -> UsageError:
    return UsageError(
        f"{path} is damaged; nothing was rendered",
        expected=f"the manifest.json a render-dataset run wrote (format {FORMAT})",
        actual=reason,
        fix=f"restore {path.name} from a backup, or render into a new OUTDIR (or delete {path.parent} to start over): "
        "without it, samples of other options could be mixed in",
    )


def _check_resume(outdir: Path, config: RenderConfig) -> None:
    """An existing manifest must be intact and name the same content options; a damaged or
    mismatched one stops the run before anything is written."""
    path = _manifest_path(outdir)
    if not os.path.lexists(path):
        return
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise _damaged(path, f"unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _damaged(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("config"), dict):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _damaged(path, f"format {found!r}, config {'present' if isinstance(data, dict) and 'config' in data else 'missing'}")
    old = data["config"]
    new = config.content_key()
    diff = sorted(k for k in new if old.get(k) != new[k])
    if diff:
        raise UsageError(
            f"{outdir} holds a dataset rendered with other options; it was left as it is",
            expected="the same options as the first run (resume) or a new OUTDIR",
            actual="different " + ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in diff),
            fix="pass the first run's options to resume it, or choose another OUTDIR",
        )


def _check_sample(meta_path: Path, meta: dict, config: RenderConfig) -> None:
    """A finished sample (even without a manifest) must match this run's options."""
    found = {
        "seed": meta.get("seed"),
        "engine": meta.get("engine"),
        "resolution": (meta.get("camera") or {}).get("resolution_px"),
    }
    want = {"seed": config.seed, "engine": config.engine, "resolution": config.resolution}
    diff = [k for k in want if found[k] != want[k]]
    n = meta.get("n_frames")
    if not isinstance(n, int) or not config.frames_min <= n <= config.frames_max:
        diff.append("frames")
        found["frames"], want["frames"] = n, f"{config.frames_min}..{config.frames_max}"
    if diff:
        raise UsageError(
            f"{meta_path.parent} was rendered with other options; nothing was rendered",
            expected="every finished sample in OUTDIR made with this run's options",
            actual=", ".join(f"{k} {found[k]!r} (this run: {want[k]!r})" for k in diff),
            fix="pass the first run's options to resume it, or choose another OUTDIR",
        )


def _write_manifest(outdir: Path, config: RenderConfig, pools: Pools, records: list[dict], complete: bool) -> None:
    def ids(pool: dict | None) -> dict | str:
        return "procedural" if pool is None else {k: [s.id for s in v] for k, v in pool.items()}

    records = sorted(records, key=lambda r: r["index"])
    payload = {
        "format": FORMAT,
        "complete": complete,
        "config": config.to_json(),
        "counts": {
            "samples": len(records),
            "train": sum(r["split"] == "train" for r in records),
            "val": sum(r["split"] == "val" for r in records),
        },
        "sources": {"subjects": ids(pools.subjects), "backgrounds": ids(pools.backgrounds)},
        "samples": [{k: v for k, v in r.items() if k != "skipped"} for r in records],
    }
    _atomic_write(_manifest_path(outdir), _json_bytes(payload))


_WORKER_STATE: dict = {}


def _worker_init(outdir: str, config: RenderConfig, pools: Pools) -> None:
    torch.set_num_threads(config.threads)
    _WORKER_STATE.update(outdir=Path(outdir), config=config, pools=pools)


def _worker_render(index: int) -> dict:
    s = _WORKER_STATE
    return render_sample(s["outdir"], s["config"], index, s["pools"])


def _progress(config: RenderConfig):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("rendering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not config.show_progress,
        transient=False,
    )


def _run_local(outdir: Path, config: RenderConfig, pools: Pools, todo: list[int], on_done) -> None:
    if config.workers == 1 or len(todo) <= 1:
        before = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            for i in todo:
                on_done(render_sample(outdir, config, i, pools))
        finally:
            torch.set_num_threads(before)
        return
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    with ctx.Pool(
        processes=min(config.workers, len(todo)),
        initializer=_worker_init,
        initargs=(str(outdir), config, pools),
    ) as pool:
        try:
            for rec in pool.imap_unordered(_worker_render, todo):
                on_done(rec)
        except BaseException:
            pool.terminate()
            raise


def _import_ray():
    try:
        import ray  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise UsageError(
            "--ray needs the optional `ray` package, which is not installed; nothing was rendered",
            expected="`import ray` to work",
            actual="ModuleNotFoundError",
            fix="pip install 'focusstack[ray]'  (or pip install 'ray>=2.9'), or drop --ray",
        ) from None
    return ray


def _run_ray(outdir: Path, config: RenderConfig, pools: Pools, todo: list[int], on_done) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False)
    try:
        _ray_tasks(ray, outdir, config, pools, todo, on_done)
    finally:
        if started_here:
            ray.shutdown()


def _ray_tasks(ray, outdir: Path, config: RenderConfig, pools: Pools, todo: list[int], on_done) -> None:
    """One Ray task per sample; ``outdir`` must be on a file system that every node shares."""

    @ray.remote(num_cpus=1)
    def _task(outdir_s: str, cfg: RenderConfig, pls: Pools, index: int) -> dict:
        torch.set_num_threads(cfg.threads)
        return render_sample(Path(outdir_s), cfg, index, pls)

    cfg_ref, pools_ref = ray.put(config), ray.put(pools)
    pending = [_task.remote(str(outdir.resolve()), cfg_ref, pools_ref, i) for i in todo]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            on_done(ray.get(ref))


def render_dataset(outdir: str | os.PathLike, config: RenderConfig) -> dict:
    """Render ``config.samples`` samples into ``outdir`` and return a summary.

    Samples whose ``meta.json`` exists are skipped (resume). The same ``seed`` and options give
    the same bytes. Raises ``UsageError`` when ``outdir`` holds a dataset made with different
    content options, ``ConfigError`` for ``--engine blender`` without bpy.
    """
    outdir = Path(outdir)
    if config.engine == "blender":
        check_blender(config.blender_python)  # ConfigError naming the install command
    if config.device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda was asked for but no CUDA device is available",
                expected="a CUDA build of torch and a GPU", actual=f"torch {torch.__version__}",
                fix="pass --device cpu",
            )
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"OUTDIR {outdir} is a file", expected="a folder (new or existing)", actual="a file",
                         fix="choose another OUTDIR")
    if config.ray:
        _import_ray()
    _check_resume(outdir, config)
    pools = build_pools(config)
    for kind, pool in (("subjects", pools.subjects), ("backgrounds", pools.backgrounds)):
        if pool is not None and config.val_fraction > 0 and not pool["val"]:
            raise UsageError(f"no {kind} left for the val split", fix="pass --val-fraction 0")
    started = time.perf_counter()
    records: dict[int, dict] = {}
    todo: list[int] = []
    for i in range(config.samples):
        meta_path = outdir / "samples" / sample_id(i) / "meta.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                record = _record(meta, skipped=True)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged meta.json: the sample is rendered again
            else:
                _check_sample(meta_path, meta, config)
                records[i] = record
                continue
        todo.append(i)
    try:
        (outdir / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(outdir / "samples", exc) from None
    _write_manifest(outdir, config, pools, list(records.values()), complete=False)

    progress = _progress(config)
    try:
        with progress:
            task = progress.add_task("render", total=config.samples, completed=len(records))

            def on_done(rec: dict) -> None:
                records[rec["index"]] = rec
                progress.advance(task)

            if config.ray:
                _run_ray(outdir, config, pools, todo, on_done)
            else:
                _run_local(outdir, config, pools, todo, on_done)
    except BaseException:
        # Ctrl-C or a failure: remove the unfinished sample folders (no meta.json), so that no
        # partial output is left behind; finished samples stay and a rerun resumes.
        for i in todo:
            if i not in records:
                _remove_unfinished(outdir / "samples" / sample_id(i))
        raise
    _write_manifest(outdir, config, pools, list(records.values()), complete=True)
    elapsed = time.perf_counter() - started
    rendered = sum(not r["skipped"] for r in records.values())
    return {
        "outdir": str(outdir),
        "manifest": str(_manifest_path(outdir)),
        "samples": len(records),
        "rendered": rendered,
        "skipped": len(records) - rendered,
        "train": sum(r["split"] == "train" for r in records.values()),
        "val": sum(r["split"] == "val" for r in records.values()),
        "seconds": round(elapsed, 3),
        "seconds_per_rendered_sample": round(elapsed / rendered, 3) if rendered else None,
        "resolution": config.resolution,
        "engine": config.engine,
        "sources": pools.summary(),
    }


def _remove_unfinished(sdir: Path) -> None:
    if sdir.is_dir() and not (sdir / "meta.json").exists():
        shutil.rmtree(sdir, ignore_errors=True)


__all__ = ["render_dataset", "render_sample", "sample_id", "sample_split"]
