"""Turn command-line inputs into an ordered, checked list of frames.

* :func:`collect_stack`: a folder or a list of files -> supported image files, natural order.
* :func:`check_stack`: headers only -> refuses too few / too many frames and mismatched sizes
  before any frame is decoded.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from focusstack.config import DEFAULT_MAX_PIXELS, MAX_FRAMES
from focusstack.errors import ImageReadError, StackError, UsageError
from focusstack.io.formats import SUPPORTED_EXTENSIONS, ImageInfo, format_extensions
from focusstack.io.readers import probe_image

__all__ = ["check_stack", "collect_stack", "natural_sort"]

log = logging.getLogger("focusstack.io")

_DIGITS = re.compile(r"(\d+)")


def _natural_key(path: Path) -> tuple[tuple[tuple[str | int, ...], ...], str]:
    parts = []
    for part in path.parts:
        pieces = _DIGITS.split(part.casefold())
        # Even positions are text, odd positions are numbers: same types at the same positions.
        parts.append(tuple(int(p) if i % 2 else p for i, p in enumerate(pieces)))
    return tuple(parts), str(path)  # the raw string breaks ties (f01 vs f1, F1 vs f1)


def natural_sort(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Sort paths the way people count: ``f2`` before ``f10``, case-insensitive.

    Args:
        paths: file paths (str or PathLike).

    Returns:
        A new list of :class:`~pathlib.Path`, compared folder by folder, then by name; digit
        runs compare as numbers, letters ignore case; exact ties fall back to the plain string.
    """
    return sorted((Path(p) for p in paths), key=_natural_key)


def _extension_error(path: Path) -> UsageError:
    suffix = path.suffix.lower()
    return UsageError(
        f"{path}: unsupported file type {suffix or '(no suffix)'}",
        expected=f"one of {format_extensions(SUPPORTED_EXTENSIONS)}",
        actual=repr(suffix or path.name),
        fix="pass only image files, or convert this one to TIFF, PNG or JPEG",
    )


def collect_stack(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """The frames of one stack, in natural order.

    Args:
        inputs: either exactly one folder (its supported image files are used: not recursive,
            hidden files skipped, other files ignored) or one or more image files.
        exclude: files never taken as frames of a folder (this run's output, when it lies in
            the input folder); compared after resolving links and by inode. Each one found is
            logged (warning). Our own temp files (``.NAME.XXXXXXXX.part``) are hidden files and
            never read. What else a folder held and was not read is logged (info), with why.

    Returns:
        The frame paths, naturally sorted (:func:`natural_sort`), as given (not resolved).
        The number of frames is checked later by :func:`check_stack`.

    Raises:
        UsageError: no inputs; a missing path; a folder mixed with other inputs; a folder with
            no supported images; a file with an unsupported suffix; the same file twice. The
            messages list the supported suffixes where that helps.
        ImageReadError: an image file in the folder that is a dangling symbolic link or a
            link loop (a frame that cannot be read is never dropped silently).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise UsageError(
            "no input frames given",
            expected="a folder of frames or 2 or more image files",
            actual="nothing",
            fix="pass a folder, e.g. `focusstack fuse shots/ -o out.tif`, or the frame files",
        )
    for path in paths:
        if not path.exists():
            raise UsageError(
                f"{path}: no such file or folder",
                fix="check the path (a typo? a folder that was moved?)",
            )
    folders = [p for p in paths if p.is_dir()]
    if folders:
        if len(paths) > 1:
            raise UsageError(
                f"{folders[0]}: a folder cannot be mixed with other inputs",
                expected="one folder, or only image files",
                actual=f"{len(folders)} folder(s) among {len(paths)} inputs",
                fix="pass a single folder per stack, or list the frame files",
            )
        return _collect_folder(folders[0], [Path(p) for p in exclude])

    seen: dict[Path, Path] = {}
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file", fix="pass image files or one folder")
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise _extension_error(path)
        key = path.resolve()
        if key in seen:
            raise UsageError(
                f"{path}: the same frame is given twice",
                expected="each frame once",
                actual=f"{seen[key]} and {path}",
                fix="remove the duplicate from the command line",
            )
        seen[key] = path
    return natural_sort(paths)


def _same_file(path: Path, others: Sequence[Path]) -> bool:
    if not others:
        return False
    try:
        target = path.resolve()
    except OSError:
        return False
    for other in others:
        try:
            if other.resolve() == target or (other.exists() and os.path.samefile(path, other)):
                return True
        except OSError:
            continue
    return False


def _shown(names: Sequence[str], limit: int = 8) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _collect_folder(folder: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise UsageError(
            f"{folder}: cannot list the folder ({exc.strerror or exc})",
            fix="check the folder's permissions",
        ) from exc
    frames = []
    skipped = []  # other files: not an image type
    why: dict[str, list[str]] = {}
    for entry in entries:
        is_image = os.path.splitext(entry.name)[1].lower() in SUPPORTED_EXTENSIONS
        if entry.name.startswith("."):
            why.setdefault("hidden", []).append(entry.name)
            continue
        try:
            os.stat(entry.path)  # follows symlinks: a dangling link or a loop fails here
            is_file = entry.is_file()
        except OSError as exc:
            if is_image:
                loop = exc.errno == errno.ELOOP
                target = _link_target(entry.path)
                raise ImageReadError(
                    f"{folder / entry.name}: "
                    + ("a symbolic link loop" if loop else "a dangling symbolic link")
                    + " in the stack folder",
                    expected="every image file in the folder to be readable",
                    actual=(f"a link to {target}, which " + ("leads back to itself" if loop else "does not exist"))
                    if target is not None else (exc.strerror or str(exc)),
                    fix="restore the file it points to, or remove the link from the folder",
                ) from exc
            why.setdefault("unreadable (not an image)", []).append(entry.name)
            continue
        if not is_file:
            why.setdefault("not a file (folders are not searched)", []).append(entry.name)
            continue
        if not is_image:
            skipped.append(entry.name)
            why.setdefault("not an image type", []).append(entry.name)
            continue
        path = folder / entry.name
        if _same_file(path, exclude):
            log.warning("%s: not read as a frame: it is this run's output", path)
            why.setdefault("this run's output", []).append(entry.name)
            continue
        frames.append(path)
    if why:
        log.info(
            "%s: %d frame(s); not read: %s",
            folder,
            len(frames),
            "; ".join(f"{_shown(names)} ({reason})" for reason, names in why.items()),
        )
    if not frames:
        if skipped:
            actual = f"{len(skipped)} other file(s): {_shown(skipped, 5)}"
        elif why:
            actual = "; ".join(f"{_shown(names, 5)} ({reason})" for reason, names in why.items())
        else:
            actual = "an empty folder"
        raise UsageError(
            f"{folder}: no supported images in the folder",
            expected=f"files ending in {format_extensions(SUPPORTED_EXTENSIONS)}",
            actual=actual,
            fix="point at the folder that holds the frames, or convert them to TIFF, PNG or JPEG",
        )
    return natural_sort(frames)


def _link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def check_stack(
    paths: Sequence[str | os.PathLike[str]],
    *,
    max_frames: int = MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[ImageInfo]:
    """Check a stack from its headers, before decoding anything.

    Args:
        paths: the frames, in stack order (from :func:`collect_stack`).
        max_frames: most frames one stack may have (default :data:`~focusstack.config.MAX_FRAMES`).
        max_pixels: per-frame pixel limit passed to :func:`~focusstack.io.probe_image`.

    Returns:
        One :class:`~focusstack.io.ImageInfo` per frame, in the same order.

    Raises:
        StackError: fewer than 2 frames; more than ``max_frames`` (``fuse`` passes
            ``focusstack.stacking.MAX_STACK_FRAMES``: long stacks are fused in slabs, so only an
            absurd count is refused); frames whose sizes differ (names the odd file, its size
            and the first frame's size).
        Grayscale frames among colour frames are accepted (read as gray RGB) with a warning.
        ImageReadError: a frame whose header cannot be read or that is too large.
    """
    frames = [Path(p) for p in paths]
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2:
        raise UsageError("max_frames must be an integer of at least 2", actual=repr(max_frames))
    if len(frames) < 2:
        raise StackError(
            "a stack needs at least 2 frames",
            expected=f"2 to {max_frames} frames",
            actual=f"{len(frames)} frame" + (f" ({frames[0]})" if frames else "s"),
            fix=f"give 2 to {max_frames} frames (a folder of them, or the files)",
        )
    if len(frames) > max_frames:
        raise StackError(
            f"a stack of more than {max_frames} frames is refused (frame limit)",
            expected=f"at most {max_frames} frames",
            actual=f"{len(frames)} frames ({frames[0].name} ... {frames[-1].name})",
            fix=(
                f"split the stack into groups of at most {max_frames} frames (for example every "
                "other frame), stack each group, then stack the results"
            ),
        )
    infos = [probe_image(p, max_pixels=max_pixels) for p in frames]
    ref = infos[0]
    for info in infos[1:]:
        if (info.width, info.height) != (ref.width, ref.height):
            raise StackError(
                f"{info.path}: frame size differs from the rest of the stack",
                expected=f"{ref.size_text} (the size of {ref.path})",
                actual=f"{info.size_text} ({info.path})",
                fix="crop or resize the frames to one size, or remove the odd frame from the stack",
            )
    gray = [i for i in infos if i.channels <= 2]
    if gray and len(gray) < len(infos):
        log.warning(
            "%d of %d frames are grayscale among colour frames (%s): they are converted to RGB "
            "(gray in all three channels), so where one of them is the sharpest the result is "
            "gray there; fix: stack colour frames only (re-export %s in colour, or remove it)",
            len(gray), len(infos), _shown([i.path.name for i in gray], 5),
            "it" if len(gray) == 1 else "them",
        )
    return infos
