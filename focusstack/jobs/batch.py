"""The ``fuse --batch`` job: every subfolder of a root fused as one stack.

:func:`fuse_batch` fuses every subfolder of a root, loading the networks once, goes on past a
bad stack and reports every stack as it ends (``on_stack``); it never takes its own output
folder (or a stack folder it writes into) as a stack. ``--ray`` runs each stack as a Ray task.
:func:`plan_batch` (``--dry-run``) says what a run would do from the headers alone.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from focusstack.config import FuseConfig
from focusstack.engines.factory import build_engine
from focusstack.errors import BatchError, DependencyError, FocusstackError, OutputExistsError, UsageError, WeightsError, classify
from focusstack.io import OUTPUT_EXTENSIONS, read_image
from focusstack.io.report import ReportEntry, StackThumbs, write_report
from focusstack.jobs.fuse import fuse_stack, plan_stack

log = logging.getLogger("focusstack.stack")


@dataclass
class BatchResult:
    fused: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    #: Subfolders of ROOT not taken as stacks, with the reason (our own output folders).
    excluded: list[dict] = field(default_factory=list)
    #: ``--report``: the contact sheet written.
    report: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StackEvent:
    """One stack of a batch has ended: ``status`` is ``wrote``, ``skipped`` or ``failed``.
    ``index`` counts from 1 to ``total`` (the number of stacks, known before the first one)."""

    index: int
    total: int
    name: str
    status: str
    output: str
    message: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """``[3/8] name: wrote PATH`` / ``skipped (exists)`` / ``failed: why; fix: ...``."""
        head = f"[{self.index}/{self.total}] {self.name}: "
        if self.status == "wrote":
            return head + f"wrote {self.output} ({self.seconds:.1f} s)"
        if self.status == "skipped":
            return head + f"skipped ({self.output} exists)"
        return head + "failed: " + "; ".join(part for part in self.message.splitlines() if part)

    def to_dict(self) -> dict:
        return {"event": "stack", **asdict(self)}


def batch_ext(ext: str) -> str:
    """``tif`` or ``.tif`` -> ``.tif``; anything that is not an output format is a usage error."""
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in OUTPUT_EXTENSIONS:
        raise UsageError(
            f"--ext {ext.lstrip('.')} is not an output format",
            expected=" | ".join(sorted(e.lstrip(".") for e in OUTPUT_EXTENSIONS)),
            actual=repr(ext.lstrip(".")),
            fix="pass --ext tif, png or jpg",
        )
    return ext.lower()


def _batch_stacks(root: Path, outdir: Path, extra_dirs: Sequence[Path]) -> tuple[list[Path], list[dict]]:
    """ROOT's subfolders that are stacks, and those excluded because focusstack writes there."""
    if not root.is_dir():
        raise UsageError(f"--batch {root} is not a folder", fix="give a folder whose subfolders are stacks")
    ours = {}
    for d, why in [(outdir, "the output folder (-o)")] + [(p, "a folder this batch writes") for p in extra_dirs]:
        ours.setdefault(Path(os.path.abspath(d)), why)
    stacks, excluded = [], []
    for d in sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name):
        why = ours.get(Path(os.path.abspath(d)))
        if why is None and d.resolve() in {p.resolve() for p in ours if p.exists()}:
            why = ours[next(p for p in ours if p.exists() and p.resolve() == d.resolve())]
        if why is not None:
            excluded.append({"folder": str(d), "reason": why})
        else:
            stacks.append(d)
    for e in excluded:
        log.warning("not a stack: %s is %s; its files are never fused", e["folder"], e["reason"])
    if not stacks:
        extra = f" (excluded: {', '.join(Path(e['folder']).name for e in excluded)})" if excluded else ""
        raise UsageError(f"--batch {root} has no subfolders{extra}", fix="put each stack in its own subfolder of ROOT")
    return stacks, excluded


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(
            f"--batch writes one file per stack into the folder -o {outdir}, which is a file",
            expected="a folder (created if missing)",
            actual="an existing file",
            fix=f"pass a folder, e.g. -o {outdir.with_suffix('')}_fused",
        )


def fuse_batch(
    root: Path,
    outdir: Path,
    config: FuseConfig = FuseConfig(),
    *,
    ext: str = ".tif",
    resume: bool = True,
    report: Path | None = None,
    depth_dir: Path | None = None,
    preview_dir: Path | None = None,
    on_stack: Callable[[StackEvent], None] | None = None,
    ray: bool = False,
    ray_address: str | None = None,
) -> BatchResult:
    """Fuse every subfolder of ``root`` into ``outdir/<name><ext>``.

    Existing outputs are skipped (resume) unless ``config.overwrite``. A failing stack is
    recorded and the batch goes on; ``on_stack`` hears of every stack as it ends. If any failed,
    :class:`BatchError` is raised at the end (every failure with its message) with the summary
    attached as ``exc.result``. ``outdir`` (and ``depth_dir``/``preview_dir``) are never taken
    as stacks when they lie inside ``root``. ``report``: write the HTML contact sheet there.
    ``depth_dir``/``preview_dir``: one ``<name>.depth.png`` / ``<name>.depth-preview.png``
    per stack.

    ``ray`` (implied by ``ray_address``): each stack to fuse is one Ray task (the ``ray`` extra),
    fused and written in the worker with the same ``config``; results are gathered as tasks
    finish (``on_stack`` hears of them in that order), the summary lists them in stack order.
    Without ``ray_address`` and no Ray running, a local Ray is started (and shut down after).
    ROOT and OUTDIR must lie on a file system every node sees at the same path.
    """
    root, outdir = Path(root), Path(outdir)
    ext = batch_ext(ext)  # before anything: a bad --ext is refused once, not once per stack
    use_ray = ray or ray_address is not None
    if use_ray:
        _import_ray()  # a missing extra is refused before any work
    _check_outdir(outdir)
    for d, opt in ((depth_dir, "--depth-map"), (preview_dir, "--depth-map-preview")):
        if d is not None and Path(d).exists() and not Path(d).is_dir():
            raise UsageError(f"{opt} {d}: with --batch this is a folder (one map per stack), and it is a file",
                             expected="a folder", actual="an existing file", fix=f"pass a folder for {opt}")
    if report is not None:
        _check_report(Path(report), config.overwrite)
    stacks, excluded = _batch_stacks(root, outdir, [p for p in (depth_dir, preview_dir, config.save_steps) if p is not None])
    if not resume and not config.overwrite:
        existing = [d.name for d in stacks if (outdir / f"{d.name}{ext}").exists()]
        if existing:
            raise OutputExistsError(
                f"--no-resume: {len(existing)} outputs exist in {outdir} ({', '.join(existing[:5])})",
                fix="drop --no-resume to skip them, or pass --overwrite to replace them",
            )
    outdir.mkdir(parents=True, exist_ok=True)
    for d in (depth_dir, preview_dir):
        if d is not None:
            Path(d).mkdir(parents=True, exist_ok=True)
    total = len(stacks)
    outcomes: dict[int, _StackOutcome] = {}
    stop = False
    engines: dict = {}  # the local batch builds its engine once, at the first stack to fuse

    def done(outcome: _StackOutcome) -> bool:
        """Record one stack's end; False once no further stack can succeed (missing weights)."""
        outcomes[outcome.event.index] = outcome
        if on_stack is not None:
            on_stack(outcome.event)
        return not outcome.weights_failed

    todo: list[tuple[int, Path, Path]] = []
    for index, stack in enumerate(stacks, 1):
        out = outdir / f"{stack.name}{ext}"
        if out.exists() and not config.overwrite:
            thumbs = None
            if report is not None:
                thumbs = StackThumbs()
                _thumb_existing(thumbs, out, config)
            done(_StackOutcome(StackEvent(index, total, stack.name, "skipped", str(out)), skipped=str(out),
                               thumbs=thumbs))
        elif use_ray:
            todo.append((index, stack, out))
        else:
            if not done(_fuse_one(index, total, stack, out, config, depth_dir, preview_dir, report is not None,
                                  engines)):
                stop = True
                break  # no stack can succeed without weights
    if use_ray and todo and not stop:
        _run_ray_batch(todo, total, config, depth_dir, preview_dir, report is not None, ray_address, done)
    result = BatchResult(excluded=excluded)
    entries = []
    for index in sorted(outcomes):
        o = outcomes[index]
        if o.fused is not None:
            result.fused.append(o.fused)
        if o.skipped is not None:
            result.skipped.append(o.skipped)
        if o.failure is not None:
            result.failed.append(o.failure)
        entries.append(_entry(o.event, o.thumbs))
    if report is not None:
        write_report(Path(report), entries, title=f"focusstack batch: {root}", overwrite=True)
        result.report = str(report)
    if result.failed:
        err = BatchError(
            f"{len(result.failed)} of {total} stacks failed:\n"
            + "\n".join(
                f"  {Path(f['stack']).name} ({f['error']}): " + "; ".join(x for x in f["message"].splitlines() if x)
                for f in result.failed
            ),
            fix="fix or remove those folders and rerun (finished stacks are skipped)",
        )
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


@dataclass
class _StackOutcome:
    """One stack's end in a batch (it pickles: a Ray task returns it)."""

    event: StackEvent
    fused: dict | None = None
    skipped: str | None = None
    failure: dict | None = None
    thumbs: object = None
    weights_failed: bool = False


#: A Ray worker's engine, kept for its next task of the same config: {"config": ..., "engine": ...}.
_WORKER_ENGINE: dict = {}


def _fuse_one(index: int, total: int, stack: Path, out: Path, config: FuseConfig, depth_dir: Path | None,
              preview_dir: Path | None, with_thumbs: bool, engines: dict) -> _StackOutcome:
    """Fuse one stack of a batch into ``out``; every failure is caught and returned."""
    t = time.perf_counter()
    thumbs = None
    if with_thumbs:
        thumbs = StackThumbs()
    try:
        if engines.get("config") != config:
            engines.clear()
            engines["engine"] = build_engine(config)
            engines["config"] = config
        cfg = replace(
            config,
            save_steps=None if config.save_steps is None else config.save_steps / stack.name,
            depth_map=None if depth_dir is None else Path(depth_dir) / f"{stack.name}.depth.png",
            depth_map_preview=None if preview_dir is None else Path(preview_dir) / f"{stack.name}.depth-preview.png",
        )
        res = fuse_stack([stack], out, cfg, engine=engines["engine"], thumbs=thumbs)
        event = StackEvent(index, total, stack.name, "wrote", str(out), seconds=time.perf_counter() - t)
        return _StackOutcome(event, fused=res.to_dict(), thumbs=thumbs)
    except (FocusstackError, ValueError, OSError, MemoryError) as exc:
        message = exc.render() if isinstance(exc, FocusstackError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FocusstackError):
            message += "\nfix: rerun this stack alone with --debug and report the traceback"
        failure = {"stack": str(stack), "error": classify(exc).label, "message": message}
        event = StackEvent(index, total, stack.name, "failed", str(out), message=message,
                           seconds=time.perf_counter() - t)
        return _StackOutcome(event, failure=failure, thumbs=thumbs, weights_failed=isinstance(exc, WeightsError))


def _import_ray():  # noqa: ANN202
    try:
        import ray  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise DependencyError(
            "--ray needs the optional `ray` package, which is not installed; nothing was fused",
            expected="`import ray` to work",
            actual="ModuleNotFoundError",
            fix="pip install 'focusstack[ray]'  (or pip install 'ray>=2.9'), or drop --ray",
        ) from None
    return ray


def _ray_fuse_task(cwd: str, index: int, total: int, stack: str, out: str, config: FuseConfig,
                   depth_dir: str | None, preview_dir: str | None, with_thumbs: bool) -> _StackOutcome:
    """A Ray task: fuse one stack in the worker (relative paths are the driver's, via ``cwd``)."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return _fuse_one(index, total, Path(stack), Path(out), config,
                         None if depth_dir is None else Path(depth_dir),
                         None if preview_dir is None else Path(preview_dir), with_thumbs, _WORKER_ENGINE)
    finally:
        os.chdir(before)


def _run_ray_batch(todo: list[tuple[int, Path, Path]], total: int, config: FuseConfig, depth_dir: Path | None,
                   preview_dir: Path | None, with_thumbs: bool, address: str | None,
                   done: Callable[[_StackOutcome], bool]) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_ray_fuse_task)
        cfg_ref = ray.put(config)
        cwd = os.getcwd()
        pending = [
            task.remote(cwd, index, total, str(stack), str(out), cfg_ref,
                        None if depth_dir is None else str(depth_dir),
                        None if preview_dir is None else str(preview_dir), with_thumbs)
            for index, stack, out in todo
        ]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                if not done(ray.get(ref)):
                    for rest in pending:  # no stack can succeed without weights
                        ray.cancel(rest)
                    return
    finally:
        if started_here:
            ray.shutdown()


def _entry(event: StackEvent, thumbs):  # noqa: ANN001, ANN202
    return ReportEntry(event.name, event.status, event.output if event.status != "failed" else None,
                       event.message, thumbs)


def _thumb_existing(thumbs, out: Path, config: FuseConfig) -> None:  # noqa: ANN001
    """A skipped stack's row shows its existing output (the frames are not read again)."""
    try:
        thumbs.on_output(read_image(out, max_pixels=config.max_pixels).pixels)
    except FocusstackError as exc:
        log.warning("--report: cannot show %s: %s", out, exc.what)


#: Marks an HTML file as a focusstack report (a rerun may replace its own report).
REPORT_MARK = "<title>focusstack batch:"


def _check_report(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {path}: the report is an HTML file", expected=".html", actual=repr(path.suffix),
                         fix=f"name it {path.with_suffix('.html').name}")
    if not path.parent.is_dir():
        raise UsageError(f"--report {path}: folder {path.parent} does not exist", fix=f"mkdir -p {path.parent}")
    if path.exists() and not overwrite:
        try:
            ours = REPORT_MARK in path.read_text(errors="replace")[:2000]
        except OSError:
            ours = False
        if not ours:
            raise OutputExistsError(f"--report {path}: the file exists and is not a focusstack report",
                                    fix="choose another name, or pass --overwrite")


def plan_batch(
    root: Path, outdir: Path, config: FuseConfig = FuseConfig(), *, ext: str = ".tif",
    depth_dir: Path | None = None, preview_dir: Path | None = None,
) -> dict:
    """:func:`plan_stack` for every stack of ``root`` (``--batch --dry-run``), plus the
    excluded folders. Usage errors (bad ``--ext``, ``-o`` a file) are raised as in a real run."""
    root, outdir = Path(root), Path(outdir)
    ext = batch_ext(ext)
    _check_outdir(outdir)
    stacks, excluded = _batch_stacks(root, outdir, [p for p in (depth_dir, preview_dir, config.save_steps) if p is not None])
    plans = []
    cfg = replace(config, make_folder=True)
    for stack in stacks:
        c = replace(
            cfg,
            depth_map=None if depth_dir is None else Path(depth_dir) / f"{stack.name}.depth.png",
            depth_map_preview=None if preview_dir is None else Path(preview_dir) / f"{stack.name}.depth-preview.png",
        )
        plans.append({"stack": stack.name, **plan_stack([stack], outdir / f"{stack.name}{ext}", c)})
    return {"root": str(root), "outdir": str(outdir), "stacks": plans, "excluded": excluded}
