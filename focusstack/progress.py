"""Progress and logs on stderr: a rich bar on a terminal, plain lines elsewhere, or JSON.

* :func:`configure` (called once by the CLI) picks the progress style (``auto``: a bar when
  stderr is a terminal, else plain lines; ``bar``, ``plain``, ``json``: one JSON object per
  step; ``none``) and the log level of the ``focusstack`` logger (``-v``/``-q``).
* :func:`progress_bar` (one task, ``update(done, total)``) and :func:`step_progress` (a task
  whose total number of steps is known up front, each step reporting its own fraction) draw in
  that style. Library code never prints: it logs (``logging.getLogger("focusstack...")``) and
  calls these.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import sys
import time
from collections.abc import Callable, Iterator

Advance = Callable[[int, int], None]

#: Progress styles for ``--progress``.
PROGRESS_MODES = ("auto", "bar", "plain", "json", "none")
#: Plain lines are printed at most this often (seconds), plus the first and the last.
PLAIN_INTERVAL_S = 2.0

_state = {"mode": "auto"}
log = logging.getLogger("focusstack")


def _noop(done: int, total: int) -> None:
    return None


class _StderrHandler(logging.Handler):
    """Writes ``level: message`` to the *current* ``sys.stderr`` (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            sys.stderr.write(f"{record.levelname.lower()}: {msg}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure(*, verbosity: int = 0, progress: str = "auto") -> None:
    """Set the progress style and the ``focusstack`` log level.

    ``verbosity``: -1 (``--quiet``: errors only, no progress), 0 (warnings), 1 (``-v``: info),
    2+ (``-vv``: debug). ``progress``: one of :data:`PROGRESS_MODES`.
    """
    if progress not in PROGRESS_MODES:
        raise ValueError(f"progress mode {progress!r} is not one of {PROGRESS_MODES}")
    _state["mode"] = "none" if verbosity < 0 and progress != "json" else progress
    level = logging.ERROR if verbosity < 0 else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        log.addHandler(handler)
    # the level lives on our handler; the logger is only opened up for -v (never narrowed), so
    # records still propagate to whatever else listens (pytest's caplog, an embedding app)
    handler.setLevel(level)
    if level < logging.WARNING and (log.level == logging.NOTSET or log.level > level):
        log.setLevel(level)


def mode() -> str:
    """The resolved progress style: ``bar``, ``plain``, ``json`` or ``none``."""
    m = _state["mode"]
    if m == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return m


def emit_json(event: dict) -> None:
    """One JSON object on one line of stderr (``--progress json``)."""
    sys.stderr.write(json.dumps(event, default=str) + "\n")
    sys.stderr.flush()


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Plain:
    """Plain progress lines, throttled: ``desc: 3/9 33% [step] 0:00:04 eta 0:00:08``."""

    def __init__(self, description: str, json_mode: bool) -> None:
        self.description = description
        self.json = json_mode
        self.t0 = time.monotonic()
        self.last = -1e9
        self.last_done = None

    def show(self, done: float, total: float | None, step: str | None = None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if self.json:
            event = {"event": "progress", "task": self.description, "done": round(done, 3), "total": total,
                     "elapsed_s": round(now - self.t0, 3)}
            if step:
                event["step"] = step
            emit_json(event)
            return
        if not final and now - self.last < PLAIN_INTERVAL_S and self.last_done is not None:
            return
        if final and self.last_done == done:
            return
        self.last, self.last_done = now, done
        elapsed = now - self.t0
        eta = None
        if total and done > 0:
            eta = elapsed * (total - done) / done
        if total:
            head = f"{100.0 * done / total:3.0f}% step {min(int(total), int(done) + 1)}/{int(total)}"
        else:
            head = f"{done:g}"
        where = f" ({step})" if step else ""
        sys.stderr.write(f"{self.description}: {head}{where} {_fmt_s(elapsed)} eta {_fmt_s(eta)}\n")
        sys.stderr.flush()


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Advance]:
    """Yield ``update(done, total)``, drawn on stderr in the configured style when enabled."""
    style = mode()
    if not enabled or style == "none":
        yield _noop
        return
    if style in ("plain", "json"):
        plain = _Plain(description, style == "json")
        yield lambda done, total: plain.show(done, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


class StepProgress:
    """A task of ``total`` steps known up front; each step reports its own fraction.

    ``within(base, span, label)`` returns an ``Advance`` that maps a step's own ``(done, total)``
    onto ``base + span * done / total`` of the whole, so the total never changes mid-run.
    """

    def __init__(self, show: Callable[[float, str | None], None], total: int) -> None:
        self._show = show
        self.total = total
        self.completed = 0.0

    def update(self, completed: float, label: str | None = None) -> None:
        self.completed = max(self.completed, min(float(completed), float(self.total)))
        self._show(self.completed, label)

    def within(self, base: float, span: float = 1.0, label: str | None = None) -> Advance:
        def advance(done: int, total: int) -> None:
            frac = done / total if total else 1.0
            self.update(base + span * frac, label)

        return advance


@contextlib.contextmanager
def step_progress(description: str, total: int, *, enabled: bool = True) -> Iterator[StepProgress]:
    """Yield a :class:`StepProgress` of ``total`` steps, drawn on stderr in the configured style."""
    style = mode()
    total = max(1, int(total))
    if not enabled or style == "none":
        yield StepProgress(lambda c, label: None, total)
        return
    if style in ("plain", "json"):
        plain = _Plain(description, style == "json")
        sp = StepProgress(lambda c, label: plain.show(c, total, label), total)
        yield sp
        sp.update(total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=total, step="")

        def show(completed: float, label: str | None) -> None:
            bar.update(task, completed=completed, step=label or "")

        sp = StepProgress(show, total)
        yield sp
        sp.update(total)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
