"""Write outputs atomically: TIFF (tifffile), PNG (Pillow; 16-bit via our own encoder), JPEG.

:func:`atomic_output` is the one place that creates output files: it writes to a hidden temp
file in the destination folder (``.NAME.XXXXXXXX.part``), fsyncs it and renames it over the
destination with :func:`os.replace`, so a reader sees either the old file or the complete new
one, never a partial file. On any exception (``KeyboardInterrupt`` included) the temp file is
removed and the destination is untouched.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from focusstack.errors import ImageWriteError, OutputExistsError, UsageError
from focusstack.io.formats import OUTPUT_EXTENSIONS, OUTPUT_FORMATS, format_extensions
from focusstack.io.png16 import encode_png16

__all__ = [
    "atomic_output",
    "atomic_outputs",
    "check_output",
    "encode_image",
    "output_bit_depth",
    "write_bytes_checked",
    "write_files",
    "write_image",
    "write_images",
]

_JPEG_QUALITY = 95
_JPEG_MAX_EXIF = 65533 - 6  # one APP1 segment; larger EXIF blocks are dropped for JPEG
_OVERWRITE_FIX = "pass --overwrite to replace it, or choose another output name"


# --------------------------------------------------------------------------------------------
# output policy


def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    fmt = OUTPUT_FORMATS.get(suffix)
    if fmt is None:
        raise UsageError(
            f"{path}: unsupported output type {suffix or '(no suffix)'}",
            expected=f"one of {format_extensions(OUTPUT_EXTENSIONS)}",
            actual=repr(suffix or path.name),
            fix="name the output with .tif (16-bit capable), .png or .jpg",
        )
    return fmt


def output_bit_depth(output_path: str | os.PathLike[str], input_bit_depths: Sequence[int]) -> int:
    """The bit depth to write ``output_path`` with, from the inputs' bit depths.

    Args:
        output_path: the output file; only its suffix matters.
        input_bit_depths: each frame's bit depth (8, 16, or 32 for float TIFF headers);
            RAW frames report 16.

    Returns:
        ``.tif``/``.tiff`` and ``.png``: 16 if any input has more than 8 bits, else 8.
        ``.jpg``/``.jpeg``: 8 (JPEG has no 16-bit mode).

    Raises:
        UsageError: an unsupported output suffix (the message lists the supported ones) or a
            bit depth other than 8, 16 or 32.
    """
    fmt = _output_format(Path(output_path))
    depths = [int(d) for d in input_bit_depths]
    bad = [d for d in depths if d not in (8, 16, 32)]
    if bad:
        raise UsageError(
            f"{output_path}: unexpected input bit depth",
            expected="8, 16 or 32",
            actual=", ".join(map(str, bad)),
        )
    if fmt == "jpeg":
        return 8
    return 16 if any(d > 8 for d in depths) else 8


# --------------------------------------------------------------------------------------------
# atomic output


def _write_error(exc: OSError, path: Path, folder: Path, cls: type[ImageWriteError] = ImageWriteError) -> ImageWriteError:
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return cls(
            f"{path}: not enough disk space to write the output",
            expected=f"free space in {folder}",
            actual=reason,
            fix=f"free space on the disk holding {folder}, or write the output elsewhere",
        )
    if code in (errno.EACCES, errno.EPERM) or isinstance(exc, PermissionError):
        return cls(
            f"{path}: cannot write to folder {folder}",
            expected="a folder you may write to",
            actual=reason,
            fix=f"choose a writable folder, or fix the permissions of {folder} (chmod u+w)",
        )
    if code == errno.EROFS:
        return cls(
            f"{path}: folder {folder} is on a read-only file system",
            actual=reason,
            fix="write the output to a writable disk",
        )
    return cls(
        f"{path}: cannot write the output",
        actual=reason,
        fix=f"check the folder {folder} (exists, writable, disk healthy) or write elsewhere",
    )


def _is_protected(path: Path, protected: Iterable[str | os.PathLike[str]]) -> bool:
    target = path.resolve()
    for item in protected:
        other = Path(item)
        if other.resolve() == target:
            return True
        try:
            if path.exists() and other.exists() and os.path.samefile(path, other):
                return True
        except OSError:
            continue
    return False


def check_output(
    path: Path,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
    *,
    error_class: type[ImageWriteError] = ImageWriteError,
) -> Path:
    """Refuse inputs as outputs, existing files without ``overwrite``, missing or unwritable
    folders. Cheap: callers run it before long work as well as at write time.

    Returns the destination folder. ``error_class``: the error raised for a folder problem
    (:class:`~focusstack.errors.FileWriteError` for outputs that are not images).
    """
    path = Path(path)
    if _is_protected(path, protected):
        raise OutputExistsError(
            f"{path}: the output is one of the inputs",
            expected="an output name different from every input",
            actual=str(path),
            fix="choose another output name (focusstack never overwrites its inputs, "
            "not even with --overwrite)",
        )
    folder = path.parent
    if os.path.lexists(path):
        if os.path.isdir(path):
            raise error_class(
                f"{path}: the output is a folder",
                expected="a file name such as stacked.tif",
                actual="an existing folder",
                fix="give a file name inside that folder",
            )
        if not overwrite:
            raise OutputExistsError(f"{path}: output exists", fix=_OVERWRITE_FIX)
    if not folder.is_dir():
        raise error_class(
            f"{path}: output folder {folder} does not exist",
            expected="an existing folder",
            actual="missing" if not folder.exists() else "not a folder",
            fix=f"create it first (mkdir -p {folder}) or choose another output path",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error_class(
            f"{path}: output folder {folder} is not writable",
            fix="choose a folder you can write to, or fix its permissions",
        )
    return folder


@contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
    error_class: type[ImageWriteError] = ImageWriteError,
) -> Iterator[Path]:
    """Write a file atomically: yield a temp path, then rename it to ``path``.

    The caller writes the whole file to the yielded path (any writer that takes a file name).
    When the ``with`` block ends normally the temp file is fsynced and renamed over ``path``
    (``os.replace``, atomic on POSIX); on any exception, ``KeyboardInterrupt`` included, the
    temp file is deleted, ``path`` is left as it was and the exception propagates (an
    ``OSError`` as :class:`ImageWriteError`).

    Args:
        path: the destination file. Its folder must exist.
        overwrite: replace an existing ``path``; without it an existing file is an error.
        protected: paths that must never be written (the input frames); compared after
            resolving symlinks and ``..``, and by inode when both exist.

    Yields:
        The temp path: ``.<name>.<8 hex digits>.part`` in the destination folder, already
        created (empty), so the folder is known to be writable.

    Raises:
        OutputExistsError: ``path`` is one of ``protected``, or exists and not ``overwrite``.
        ImageWriteError: the folder is missing or not writable, the disk is full, any other
            OS error while writing, syncing or renaming.
    """
    with atomic_outputs([path], overwrite=overwrite, protected=protected, error_class=error_class) as (tmp,):
        yield tmp


def _temp_name(folder: Path, path: Path, kind: str) -> Path:
    # a short temp name when the output's own name leaves no room (names are limited to 255 bytes)
    stem = path.name if len(os.fsencode(path.name)) <= 200 else "focusstack"
    return folder / f".{stem}.{secrets.token_hex(4)}.{kind}"


@contextmanager
def atomic_outputs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
    error_class: type[ImageWriteError] = ImageWriteError,
) -> Iterator[list[Path]]:
    """Write several files all or none: yield one temp path per file, then rename them all.

    Every temp file is written (by the caller) and fsynced before the first rename, so a full
    disk or any error while writing leaves every destination as it was. The renames do not
    need disk space; should one of them still fail, the files already renamed are rolled
    back (a replaced file is restored from a hard link kept until the end, a new one removed),
    so the outputs are again all or none. One path behaves exactly as :func:`atomic_output`.

    Args:
        paths: the destination files, all different; their folders must exist.
        overwrite: replace existing files; without it an existing file is an error.
        protected: paths that must never be written (the inputs).
        error_class: the error an OS error becomes (``FileWriteError`` for CSV, JSON, ...).

    Yields:
        The temp paths, in the order of ``paths`` (created, empty).

    Raises:
        UsageError: the same destination twice.
        OutputExistsError / ImageWriteError: as :func:`atomic_output`, for any of the files.
    """
    dests = [Path(p) for p in paths]
    protected = tuple(protected)
    if len({d.resolve() for d in dests}) != len(dests):
        raise UsageError(
            "the same output file is named twice",
            expected="a different file for each output",
            actual=", ".join(map(str, dests)),
            fix="give each output its own name",
        )
    folders = [check_output(d, overwrite, protected, error_class=error_class) for d in dests]
    temps: list[Path] = []
    committed = False
    try:
        for dest, folder in zip(dests, folders):
            tmp = _temp_name(folder, dest, "part")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                os.close(fd)
            except OSError as exc:
                raise _write_error(exc, dest, folder, error_class) from exc
            temps.append(tmp)
        current = 0
        try:
            yield list(temps)
            for current, tmp in enumerate(temps):
                _fsync_path(tmp)
            _commit(dests, folders, temps, overwrite)
            committed = True
        except OSError as exc:
            raise _write_error(exc, dests[current], folders[current], error_class) from exc
        for folder in dict.fromkeys(folders):
            _fsync_dir(folder)
    finally:
        if not committed:
            for tmp in temps:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _commit(dests: list[Path], folders: list[Path], temps: list[Path], overwrite: bool) -> None:
    """Rename every temp file over its destination; all or none (see :func:`atomic_outputs`)."""
    for dest in dests:
        if os.path.lexists(dest) and not overwrite:  # appeared while we were writing
            raise OutputExistsError(f"{dest}: output exists", fix=_OVERWRITE_FIX)
    if len(dests) == 1:
        if os.path.lexists(dests[0]):
            _copy_mode(dests[0], temps[0])
        os.replace(temps[0], dests[0])
        return
    backups: dict[int, Path] = {}
    done: list[int] = []
    try:
        for i, (dest, folder) in enumerate(zip(dests, folders)):
            if os.path.lexists(dest):
                backup = _temp_name(folder, dest, "old")
                os.link(dest, backup, follow_symlinks=False)  # no data copied, no space needed
                backups[i] = backup
                _copy_mode(dest, temps[i])
        for i, (dest, tmp) in enumerate(zip(dests, temps)):
            os.replace(tmp, dest)
            done.append(i)
    except BaseException:
        for i in reversed(done):  # roll back: every destination as it was
            try:
                if i in backups:
                    os.replace(backups.pop(i), dests[i])
                else:
                    os.unlink(dests[i])
            except OSError:
                pass
        raise
    finally:
        for backup in backups.values():
            try:
                os.unlink(backup)
            except OSError:
                pass


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; best effort (not every file system supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_mode(src: Path, dst: Path) -> None:
    """Keep the permissions of the file being replaced (best effort)."""
    try:
        os.chmod(dst, stat.S_IMODE(os.stat(src).st_mode))
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# images


def _quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """``(H, W, 3) float in [0, 1]`` -> uint8/uint16, clipped, rounded with ``np.rint``."""
    top = 255.0 if bit_depth == 8 else 65535.0
    work = np.clip(pixels, 0.0, 1.0, dtype=np.float32)
    work *= np.float32(top)
    np.rint(work, out=work)
    return work.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _validate_pixels(path: Path, pixels: object) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageWriteError(
            f"{path}: cannot write these pixels",
            expected="an (H, W, 3) array",
            actual=str(getattr(pixels, "shape", type(pixels).__name__)),
        )
    if pixels.dtype.kind != "f":
        raise ImageWriteError(
            f"{path}: cannot write these pixels",
            expected="floating-point values in [0, 1] (float32)",
            actual=str(pixels.dtype),
        )
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ImageWriteError(
            f"{path}: cannot write an empty image", expected="at least 1x1", actual=str(pixels.shape)
        )
    if not np.isfinite(np.sum(pixels, dtype=np.float64)):
        raise ImageWriteError(
            f"{path}: the image to write contains NaN or infinity",
            expected="finite values in [0, 1]",
            actual=f"{int(np.count_nonzero(~np.isfinite(pixels))):,} NaN/inf samples",
            fix="this is a bug in the stacking step; please report it with --debug output",
        )
    return pixels


def _encode_png(tmp, data: np.ndarray, exif: bytes | None, icc: bytes | None) -> None:  # noqa: ANN001  (binary file)
    if data.dtype == np.uint16:
        encode_png16(tmp, data, icc=icc, exif=exif)
        return
    params: dict[str, object] = {"compress_level": 4}
    if icc:
        params["icc_profile"] = icc
    if exif:
        params["exif"] = exif
    Image.fromarray(data, "RGB").save(tmp, format="PNG", **params)


def _encode_jpeg(tmp, data: np.ndarray, exif: bytes | None, icc: bytes | None) -> None:
    params: dict[str, object] = {"quality": _JPEG_QUALITY, "subsampling": 0, "optimize": True}
    if icc:
        params["icc_profile"] = icc
    if exif:
        body = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif
        if len(body) <= _JPEG_MAX_EXIF:  # an oversized block does not fit one APP1 segment
            params["exif"] = body
    Image.fromarray(data, "RGB").save(tmp, format="JPEG", **params)


#: TIFF IFD0 text tags kept from the first frame's EXIF: ImageDescription, Make, Model,
#: DateTime, Artist, Copyright.
_TIFF_BASIC_TAGS = (270, 271, 272, 306, 315, 33432)


def _tiff_basics(exif: bytes | None) -> dict[int, str]:
    """The basic IFD0 text tags of an EXIF block (ASCII only; anything unreadable is dropped)."""
    if not exif:
        return {}
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        values = {code: parsed.get(code) for code in _TIFF_BASIC_TAGS}
    except Exception:  # noqa: BLE001 - damaged EXIF: the output simply has no basics
        return {}
    out = {}
    for code, value in values.items():
        if isinstance(value, bytes):
            value = value.decode("ascii", "ignore")
        if isinstance(value, str):
            value = "".join(ch for ch in value if 32 <= ord(ch) < 127).strip()
            if value:
                out[code] = value
    return out


#: Exif-IFD tags carried into a TIFF output's XMP packet (tag 700), as ``exif:``/``exifEX:``
#: properties: exposure time, f-number, ISO, focal length, original date, lens make and model.
_XMP_EXIF_TAGS = {33434: "exif:ExposureTime", 33437: "exif:FNumber", 34855: "exif:ISOSpeedRatings",
                  37386: "exif:FocalLength", 36867: "exif:DateTimeOriginal", 42035: "exifEX:LensMake",
                  42036: "exifEX:LensModel"}


def _xmp_from_exif(exif: bytes | None) -> bytes | None:
    """The first frame's exposure and lens tags as an XMP packet (UTF-8 bytes), or None. TIFF
    output cannot hold the EXIF block (it needs its own IFD), but XMP is one tag."""
    if not exif:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        ifd = parsed.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - damaged EXIF: no XMP
        return None
    from xml.sax.saxutils import escape

    props = []
    for code, name in _XMP_EXIF_TAGS.items():
        value = ifd.get(code)
        if value is None:
            continue
        if isinstance(value, bytes):
            value = value.decode("ascii", "ignore")
        if isinstance(value, tuple):
            value = value[0] if value else None
        if hasattr(value, "numerator") and hasattr(value, "denominator") and not isinstance(value, int):
            value = f"{value.numerator}/{value.denominator}"  # XMP rationals are "n/d"
        text = "".join(ch for ch in str(value) if 32 <= ord(ch) < 127).strip()
        if text and code == 34855:  # ISO is an ordered array in XMP
            props.append(f"<{name}><rdf:Seq><rdf:li>{escape(text)}</rdf:li></rdf:Seq></{name}>")
        elif text:
            props.append(f"<{name}>{escape(text)}</{name}>")
    if not props:
        return None
    body = "".join(props)
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:exifEX="http://cipa.jp/exif/1.0/">' + body
            + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode("utf-8")


def _encode_tiff(tmp, data: np.ndarray, exif: bytes | None, icc: bytes | None) -> None:
    import tifffile

    # The EXIF block itself is not written to TIFF: it would need its own IFD with offsets
    # patched into the main one, which tifffile does not do for us. Its basics (Make, Model,
    # DateTime, Artist, Copyright, ImageDescription) go into IFD0 as ordinary TIFF tags, with
    # Orientation 1: the pixels are written upright (the reader applied the orientation); the
    # exposure and lens tags go into an XMP packet (tag 700).
    basics = _tiff_basics(exif)
    description = basics.pop(270, None)
    when = basics.pop(306, None)
    extratags = [(code, "s", 0, value, True) for code, value in sorted(basics.items())]
    extratags.append((274, "H", 1, 1, True))  # Orientation: top-left
    xmp = _xmp_from_exif(exif)  # exposure and lens tags, which IFD0 has no place for
    if xmp:
        extratags.append((700, "B", len(xmp), xmp, True))
    tifffile.imwrite(
        tmp,
        data,
        description=description,
        datetime=when,
        extratags=extratags,
        photometric="rgb",
        planarconfig="contig",
        compression="zlib",
        # 4096x2731 RGB, 8-bit (a fused devA scene): level 6 took 3.5 s; 4 0.31 s, 10.8 MB;
        # 1 0.19 s, 12.1 MB (session 13: the write is on the critical path of every run)
        compressionargs={"level": 1},
        predictor=True,
        rowsperstrip=64,  # strips compress in parallel (maxworkers)
        maxworkers=os.cpu_count() or 1,
        iccprofile=icc or None,
        metadata=None,
        software="focusstack",
    )


_ENCODERS = {"png": _encode_png, "jpeg": _encode_jpeg, "tiff": _encode_tiff}


def encode_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    bit_depth: int,
    exif: bytes | None = None,
    icc: bytes | None = None,
) -> bytes:
    """The bytes :func:`write_image` would write to ``path`` (format from its suffix); nothing
    is written. Same arguments and checks as :func:`write_image` (but not the output checks)."""
    path = Path(path)
    fmt = _output_format(path)
    if bit_depth not in (8, 16) or isinstance(bit_depth, bool):
        raise UsageError(f"{path}: unsupported output bit depth", expected="8 or 16", actual=repr(bit_depth))
    if fmt == "jpeg" and bit_depth != 8:
        raise UsageError(
            f"{path}: JPEG cannot hold 16-bit images",
            expected="bit depth 8 for .jpg/.jpeg",
            actual=str(bit_depth),
            fix="write a .tif or .png for 16-bit output",
        )
    for name, blob in (("exif", exif), ("icc", icc)):
        if blob is not None and not isinstance(blob, (bytes, bytearray)):
            raise ImageWriteError(f"{path}: {name} must be bytes or None", actual=type(blob).__name__)
    pixels = _validate_pixels(path, pixels)
    data = _quantize(pixels, bit_depth)
    buf = io.BytesIO()
    _ENCODERS[fmt](buf, data, bytes(exif) if exif else None, bytes(icc) if icc else None)
    return buf.getvalue()


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    bit_depth: int,
    exif: bytes | None = None,
    icc: bytes | None = None,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write an RGB image atomically (see :func:`atomic_output`).

    Args:
        path: output file; ``.tif``/``.tiff`` (tifffile, deflate-compressed), ``.png`` (8-bit
            through Pillow, 16-bit through our own encoder) or ``.jpg``/``.jpeg`` (Pillow,
            quality 95, no chroma subsampling).
        pixels: ``(H, W, 3) float32 in [0, 1]``, RGB (any float dtype is accepted). Values are
            clipped to ``[0, 1]`` and rounded with ``np.rint``; NaN/inf is an error.
        bit_depth: 8 or 16 (16 only for TIFF and PNG); see :func:`output_bit_depth`.
        exif: EXIF block (Pillow's bytes, ``b"Exif\\0\\0..."``) to keep, or ``None``. Written to
            JPEG and PNG; TIFF gets its basic tags (Make, Model, DateTime, Artist, Copyright,
            ImageDescription) and always Orientation 1.
        icc: ICC profile bytes to embed, or ``None``. Written to every format.
        overwrite: replace an existing output.
        protected: the input frames; the output may never be one of them.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UsageError: unsupported suffix, bit depth not 8/16, 16 bits for JPEG.
        OutputExistsError: ``path`` exists and not ``overwrite``, or ``path`` is an input.
        ImageWriteError: bad pixels, missing or unwritable folder, full disk, other OS errors.
    """
    return write_images([(path, pixels, bit_depth, exif, icc)], overwrite=overwrite, protected=protected)[0]


def write_images(
    images: Sequence[tuple],
    *,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write several images all or none (see :func:`atomic_outputs`).

    Args:
        images: ``(path, pixels, bit_depth, exif, icc)`` per image, as :func:`write_image`
            takes them (``exif``/``icc`` may be ``None``).
        overwrite, protected: as :func:`write_image`, for every image.

    Returns:
        The paths, in order. On any error none of them was written (old files kept).
    """
    protected = tuple(protected)
    paths = [Path(item[0]) for item in images]
    for path in paths:
        _output_format(path)
        check_output(path, overwrite, protected)  # fail before the work of encoding
    # Encode in memory, then write the bytes ourselves and check that every one arrived: an
    # encoder that writes in one call can lose a short write on a full disk unnoticed (Pillow's
    # optimised JPEG did), and a truncated file must never be renamed into place.
    blobs = [
        encode_image(path, pixels, bit_depth=bit_depth, exif=exif, icc=icc)
        for path, (_, pixels, bit_depth, exif, icc) in zip(paths, images)
    ]
    write_files(list(zip(paths, blobs)), overwrite=overwrite, protected=protected)
    return paths


def write_files(
    files: Sequence[tuple[str | os.PathLike[str], bytes]],
    *,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] = (),
    error_class: type[ImageWriteError] = ImageWriteError,
) -> list[Path]:
    """Write ready-made bytes (CSV, JSON, encoded images) to files, all or none, each checked
    byte for byte before the renames (see :func:`atomic_outputs`). ``error_class``: pass
    :class:`~focusstack.errors.FileWriteError` for files that are not images."""
    paths = [Path(p) for p, _ in files]
    with atomic_outputs(paths, overwrite=overwrite, protected=protected, error_class=error_class) as temps:
        for tmp, path, (_, data) in zip(temps, paths, files):
            try:
                write_bytes_checked(tmp, data)
            except OSError as exc:
                raise _write_error(exc, path, path.parent, error_class) from exc
    return paths


def write_bytes_checked(tmp: Path, data) -> None:  # noqa: ANN001  (bytes-like)
    """Write ``data`` to ``tmp`` completely (looping over short writes) and check the file's
    size afterwards; raises ``OSError`` (ENOSPC) when the disk took fewer bytes."""
    view = memoryview(data).cast("B")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        done = 0
        while done < len(view):
            n = os.write(fd, view[done:])
            if n <= 0:
                raise OSError(errno.ENOSPC, "no space left on device (short write)", str(tmp))
            done += n
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size != len(view):
        raise OSError(errno.ENOSPC, f"wrote {size} of {len(view)} bytes", str(tmp))
