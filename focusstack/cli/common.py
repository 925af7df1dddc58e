"""What every subcommand shares: error reporting through the table in ``focusstack.errors``,
the stderr console for progress and logs, and JSON output on stdout."""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import typer

from focusstack.config import debug_enabled
from focusstack.errors import EXIT_INTERRUPTED, FocusstackError, classify
from focusstack.progress import configure


class _StderrConsole:
    """The rich console on stderr, made on first use: a run that prints nothing there (``fuse
    -q``) does not import rich.console (about 17 ms of every start, issue 17)."""

    _console = None

    def __getattr__(self, name: str) -> Any:
        if _StderrConsole._console is None:
            from rich.console import Console

            _StderrConsole._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return getattr(_StderrConsole._console, name)


#: Progress bars and logs go to stderr; results go to stdout.
err_console = _StderrConsole()


def report_error(exc: BaseException, *, debug: bool = False) -> int:
    """Print ``exc`` on stderr as the table says and return its exit code."""
    from rich.markup import escape

    kind = classify(exc)
    if debug or debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, FocusstackError):
        body = exc.render()
    elif isinstance(exc, KeyboardInterrupt):
        body = "stopped by the user; no partial output was left behind"
    else:
        body = f"{type(exc).__name__}: {exc}\nfix: rerun with --debug and report the traceback"
    err_console.print(f"[bold red]error[/] ({kind.label}): {escape(body)}", markup=True, highlight=False)
    return kind.exit_code


@contextlib.contextmanager
def handle_errors(debug: bool = False) -> Iterator[None]:
    """Turn any exception raised inside into a message on stderr and ``typer.Exit(code)``."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        report_error(exc, debug=debug)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - the whole point is to map every error
        raise typer.Exit(report_error(exc, debug=debug)) from None


def setup_output(*, verbose: int = 0, quiet: bool = False, progress: str = "auto") -> None:
    """``-v``/``-q``/``--progress``: the ``focusstack`` log level and the progress style on
    stderr (``focusstack.progress.configure``)."""
    configure(verbosity=-1 if quiet else verbose, progress=progress)


def print_result(line: str) -> None:
    """One line of a command's result on stdout (progress and logs go to stderr)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def print_json(payload: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
