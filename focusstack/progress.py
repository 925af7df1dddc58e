"""Rich progress bars on stderr, or nothing when disabled (``--quiet``, ``--json`` with no TTY)."""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)

Advance = Callable[[int, int], None]


def _noop(done: int, total: int) -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Advance]:
    """Yield ``update(done, total)``. Draws a bar on stderr when enabled."""
    if not enabled:
        yield _noop
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console, transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
