"""Every error focusstack reports, and the one table that maps it to a message and an exit code.

Library code raises a subclass of :class:`FocusstackError` with three parts: ``what`` went wrong
(naming the file or option), what was ``expected`` and what was found, and the ``fix``. The CLI
turns it into two or three lines on stderr and the exit code from :data:`EXIT_CODES`:

* ``1``: a failure (a file could not be read, weights are missing, a stack failed).
* ``2``: a usage error (a bad option or argument, a feature that is not built yet).

Tracebacks appear only with ``--debug`` or ``FOCUSSTACK_DEBUG=1``.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class FocusstackError(Exception):
    """Base class. ``what`` is the headline; ``expected``/``actual`` and ``fix`` are optional."""

    def __init__(
        self,
        what: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.expected is not None and self.actual is not None:
            lines.append(f"expected {self.expected}, got {self.actual}")
        elif self.expected is not None:
            lines.append(f"expected {self.expected}")
        elif self.actual is not None:
            lines.append(f"got {self.actual}")
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)


class UsageError(FocusstackError):
    """An option or argument that cannot work as given."""


class NotBuiltError(UsageError):
    """A subcommand or option that is planned but not implemented yet."""


class ImageReadError(FocusstackError):
    """A frame that cannot be decoded: unreadable, truncated, wrong format, too large."""


class ImageWriteError(FocusstackError):
    """An output that cannot be written: folder not writable, disk full, bad extension."""


class OutputExistsError(UsageError):
    """The output exists and ``--overwrite`` was not given, or the output equals an input."""


class StackError(FocusstackError):
    """Frames that do not form a valid stack: sizes differ, too few or too many frames."""


class WeightsError(FocusstackError):
    """Weights that are missing, corrupt (sha256 mismatch), untrained, or do not fit the model."""


class ConfigError(UsageError):
    """A configuration value out of range."""


class BatchError(FocusstackError):
    """One or more stacks of a batch failed; the summary lists each."""


class FileWriteError(ImageWriteError):
    """An output that is not an image (a CSV, a JSON manifest, a dataset file) cannot be written."""


class PairingError(FocusstackError):
    """Inputs that do not pair up (``eval``: a prediction without its GT, sizes that differ)."""


class DependencyError(FocusstackError):
    """An optional package a feature needs is not installed (the fix names the extra)."""


@dataclass(frozen=True)
class ErrorKind:
    exit_code: int
    label: str


#: The table: exception type -> (exit code, label printed before the message).
#: Looked up along the MRO, so a subclass inherits its parent's row unless it has its own.
EXIT_CODES: dict[type[BaseException], ErrorKind] = {
    NotBuiltError: ErrorKind(EXIT_USAGE, "not built yet"),
    OutputExistsError: ErrorKind(EXIT_USAGE, "output exists"),
    ConfigError: ErrorKind(EXIT_USAGE, "bad option"),
    UsageError: ErrorKind(EXIT_USAGE, "usage error"),
    ImageReadError: ErrorKind(EXIT_FAILURE, "cannot read image"),
    FileWriteError: ErrorKind(EXIT_FAILURE, "cannot write file"),
    ImageWriteError: ErrorKind(EXIT_FAILURE, "cannot write image"),
    StackError: ErrorKind(EXIT_FAILURE, "bad stack"),
    WeightsError: ErrorKind(EXIT_FAILURE, "weights problem"),
    BatchError: ErrorKind(EXIT_FAILURE, "batch failed"),
    PairingError: ErrorKind(EXIT_FAILURE, "inputs do not pair"),
    DependencyError: ErrorKind(EXIT_FAILURE, "missing package"),
    FocusstackError: ErrorKind(EXIT_FAILURE, "error"),
    KeyboardInterrupt: ErrorKind(EXIT_INTERRUPTED, "interrupted"),
    MemoryError: ErrorKind(EXIT_FAILURE, "out of memory"),
}


def classify(exc: BaseException) -> ErrorKind:
    """Return the table row for ``exc`` (nearest class in its MRO); unknown errors are failures."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return ErrorKind(EXIT_FAILURE, "internal error")
