"""Read frames: RAW through rawpy, TIFF through tifffile, PNG and JPEG through Pillow.

Every reader looks at the header first (size, channels, bit depth) and refuses a frame larger
than ``max_pixels`` before a single pixel is decoded (image-bomb guard), then decodes to
``(H, W, 3) float32 in [0, 1]``. Whatever goes wrong inside a decoder (truncated data, a text
file named ``.png``, an empty file, an unsupported variant) comes out as
:class:`~focusstack.errors.ImageReadError` naming the file; no other exception type escapes
:func:`probe_image` or :func:`read_image` (``KeyboardInterrupt`` aside).

The file's *content* decides between PNG, JPEG and TIFF (a JPEG named ``.tif`` still reads);
RAW suffixes always go to LibRaw (DNG, NEF and most RAW formats are TIFF inside).
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin

from focusstack.config import DEFAULT_MAX_PIXELS
from focusstack.errors import FocusstackError, ImageReadError, UsageError
from focusstack.ops.memory import PLAIN_FROM_BYTES, Scratch, empty_plain
from focusstack.io.formats import (
    RAW_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    Frame,
    ImageInfo,
    format_extensions,
)

__all__ = ["probe_image", "read_image"]

log = logging.getLogger("focusstack.io")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF

_REEXPORT = "re-export or re-copy the file (it may be damaged or only partly copied)"
_KIND_NAMES = {"raw": "camera RAW", "tiff": "TIFF", "png": "PNG", "jpeg": "JPEG"}
_SUFFIX_KIND = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}

#: PNG (bit depth, colour type) pairs the PNG specification allows -> channels stored.
_PNG_CHANNELS = {
    **{(d, 0): 1 for d in (1, 2, 4, 8, 16)},
    **{(d, 2): 3 for d in (8, 16)},
    **{(d, 3): 3 for d in (1, 2, 4, 8)},
    **{(d, 4): 2 for d in (8, 16)},
    **{(d, 6): 4 for d in (8, 16)},
}


# --------------------------------------------------------------------------------------------
# public API


def probe_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read the header of one frame; pixels are never decoded.

    Args:
        path: a file with one of :data:`~focusstack.io.SUPPORTED_EXTENSIONS`.
        max_pixels: largest ``width * height`` accepted (positive int); larger frames are
            refused before decoding, so a crafted header cannot make focusstack allocate
            gigabytes.

    Returns:
        :class:`~focusstack.io.ImageInfo` with the size :func:`read_image` will return.

    Raises:
        ImageReadError: missing, empty, unreadable, unknown or unsupported file, a damaged
            header, or more than ``max_pixels`` pixels. Nothing else escapes.
        UsageError: ``max_pixels`` is not a positive integer.
    """
    info, _ = _open_image(Path(path), _checked_max_pixels(max_pixels), decode=False)
    return info


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """Decode one frame to ``(H, W, 3) float32 in [0, 1]``, RGB.

    The header is checked first exactly as :func:`probe_image` does (size limit included), then
    the pixels are decoded:

    * RAW (rawpy/LibRaw): ``postprocess(use_camera_wb=True, output_bps=16,
      no_auto_bright=True)``: camera white balance, sRGB primaries and gamma, no auto
      brightening; ``bit_depth`` 16. Bayer and already-RGB files (scanner NEFs) both work.
    * TIFF (tifffile, never Pillow, which drops 16-bit RGB to 8 bits; a compression tifffile
      decodes only with the optional imagecodecs package, such as LZW, through OpenCV): uint8, uint16
      (n-bit samples scaled by ``2**n - 1``), bilevel, float16/32/64. Float samples are clipped
      to ``[0, 1]`` (never rescaled: frames of one stack must keep one brightness scale); when
      any sample is above 1 (a linear HDR frame) a warning says how many were clipped. NaN or
      infinity is an error. Gray is replicated to RGB, alpha and other
      extra samples are ignored, planar (``(3, H, W)``) files are transposed, palette and CMYK
      files are converted (CMYK naively, without a colour profile), multi-page files give their
      first page (or their first three pages when the file says they are the colour channels).
    * PNG (Pillow; 16-bit colour PNGs at full 16-bit precision) and JPEG (Pillow): modes
      ``1, L, LA, P, PA, RGB, RGBA, I;16*, I, CMYK, YCbCr``. Alpha is ignored. 16-bit
      gray+alpha PNG is read at 8-bit precision (a Pillow limit).
    * Orientation is applied, so pixels come upright as a viewer shows them: the EXIF
      Orientation tag (2-8) of PNG and JPEG (the same transposition as Pillow's
      ``ImageOps.exif_transpose``), the TIFF Orientation tag (274) of TIFF files, LibRaw's
      ``flip`` of RAW files. ``exif`` then says Orientation 1 (its bytes patched in place), so
      the output is not rotated a second time by viewers. :func:`probe_image` reports the
      upright size.

    Args:
        path: a file with one of :data:`~focusstack.io.SUPPORTED_EXTENSIONS`.
        max_pixels: largest ``width * height`` accepted (positive int).

    Returns:
        :class:`~focusstack.io.Frame` with ``pixels`` ``(H, W, 3) float32 in [0, 1]``,
        ``bit_depth`` 8 or 16, ``exif`` (Pillow's raw block; for TIFF a block holding the
        file's basic tags, Make/Model/DateTime/Artist/Copyright, or ``None``; ``None`` for RAW) and
        ``icc`` (embedded profile bytes or ``None``).

    Raises:
        ImageReadError: anything :func:`probe_image` refuses, truncated or damaged pixel data,
            NaN/inf in a float TIFF, out of memory while decoding. Nothing else escapes.
        UsageError: ``max_pixels`` is not a positive integer.
    """
    _, frame = _open_image(Path(path), _checked_max_pixels(max_pixels), decode=True)
    assert frame is not None
    return frame


# --------------------------------------------------------------------------------------------
# dispatch, guards and error wrapping


def _checked_max_pixels(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise UsageError(
            "--max-pixels must be a positive whole number",
            expected="an integer > 0",
            actual=repr(max_pixels),
            fix=f"pass --max-pixels {DEFAULT_MAX_PIXELS} (the default) or another positive number",
        )
    return int(max_pixels)


def _open_image(path: Path, max_pixels: int, *, decode: bool) -> tuple[ImageInfo, Frame | None]:
    kind = _detect_kind(path)
    with _decoder_errors(path, kind):
        if kind == "raw":
            return _raw(path, max_pixels, decode)
        if kind == "tiff":
            return _tiff(path, max_pixels, decode)
        if kind == "png":
            return _png(path, max_pixels, decode)
        return _jpeg(path, max_pixels, decode)


def _detect_kind(path: Path) -> str:
    """``"raw" | "tiff" | "png" | "jpeg"`` from the suffix (RAW) or the first bytes (others)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ImageReadError(
            f"{path}: unsupported file type {suffix or '(no suffix)'}",
            expected=f"one of {format_extensions(SUPPORTED_EXTENSIONS)}",
            actual=repr(suffix or path.name),
            fix="convert the frame to TIFF, PNG or JPEG, or pass only image files",
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found", fix="check the path and the file name") from None
    except OSError as exc:
        raise ImageReadError(
            f"{path}: cannot open the file ({exc.strerror or exc})",
            fix="check that the file exists and that you may read it",
        ) from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(
            f"{path}: is a folder, not an image",
            fix="pass the folder itself as the only input, or name image files",
        )
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"{path}: not a regular file", fix="pass an image file")
    if st.st_size == 0:
        raise ImageReadError(
            f"{path}: file is empty",
            expected="image data",
            actual="0 bytes",
            fix="re-copy or re-export the file (the copy or export did not finish)",
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageReadError(
            f"{path}: cannot read the file ({exc.strerror or exc})",
            fix="check that you may read the file and that the disk is healthy",
        ) from exc
    if suffix in RAW_EXTENSIONS:
        return "raw"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(_JPEG_SIGNATURE):
        return "jpeg"
    if head[:4] in _TIFF_SIGNATURES:
        return "tiff"
    expected_kind = _KIND_NAMES[_SUFFIX_KIND[suffix]]
    raise ImageReadError(
        f"{path}: not a PNG, JPEG or TIFF image",
        expected=f"{expected_kind} data (as its {suffix} suffix says)",
        actual=_describe_head(head),
        fix=_REEXPORT,
    )


def _describe_head(head: bytes) -> str:
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"text starting {head.decode('ascii')[:12]!r}"
    return "bytes " + head[:8].hex(" ")


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(
            f"{path}: the header gives an empty image",
            expected="width and height of at least 1",
            actual=f"{width}x{height}",
            fix=_REEXPORT,
        )
    pixels = width * height
    if pixels > max_pixels:
        raise ImageReadError(
            f"{path}: image too large to decode safely ({width}x{height} = {pixels:,} pixels)",
            expected=f"at most {max_pixels:,} pixels (the --max-pixels limit)",
            actual=f"{pixels:,} pixels",
            fix=(
                f"if the file is genuine, raise the limit with --max-pixels {pixels} "
                "(each pixel needs about 12 bytes of memory); otherwise re-export it"
            ),
        )


class _ToDebug(logging.Filter):
    """Re-log a third-party logger's records (tifffile's) at debug level under focusstack.io."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s: %s says: %s", self.path, record.name, record.getMessage())
        return False


@contextmanager
def _quiet_decoders(path: Path) -> Iterator[None]:
    """Decoder warnings (numpy, Pillow, tifffile's logger) go to the debug log, never to stderr.

    What matters in them is reported by our own checks (truncation, size, NaN, clipping)."""
    tiff_log = logging.getLogger("tifffile")
    filt = _ToDebug(path)
    tiff_log.addFilter(filt)
    try:
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            yield
    finally:
        tiff_log.removeFilter(filt)
    for w in caught:
        log.debug("%s: decoder warning: %s: %s", path, w.category.__name__, w.message)


@contextmanager
def _decoder_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn anything a decoder raises into an ImageReadError naming ``path``."""
    try:
        with _quiet_decoders(path):
            yield
    except FocusstackError:
        raise
    except MemoryError as exc:
        raise ImageReadError(
            f"{path}: out of memory while decoding",
            fix="close other programs, or lower --max-pixels so that frames this large are refused",
        ) from exc
    except Exception as exc:  # every decoder error: OSError, ValueError, SyntaxError, LibRawError ...
        detail = _short(exc)
        truncated = any(
            word in detail.lower()
            for word in ("truncat", "end of file", "eof", "failed to read", "input/output", "incomplete")
        ) or isinstance(exc, EOFError)
        what = "file is truncated or damaged" if truncated else f"cannot decode this {_KIND_NAMES[kind]} file"
        raise ImageReadError(
            f"{path}: {what}",
            expected=f"a complete, valid {_KIND_NAMES[kind]} file",
            actual=detail,
            fix=_REEXPORT,
        ) from exc


def _short(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    text = " ".join(text.split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _info(path: Path, width: int, height: int, channels: int, bit_depth: int, kind: str) -> ImageInfo:
    return ImageInfo(
        path=path, width=int(width), height=int(height), channels=int(channels),
        bit_depth=int(bit_depth), kind=kind,
    )


def _to_rgb(samples: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` numbers -> ``(H, W, 3) float32`` divided by ``scale``.

    C >= 3: the first three channels; C in (1, 2): channel 0 replicated (gray, gray+alpha).
    """
    if samples.ndim == 2:
        samples = samples[:, :, None]
    src = samples[:, :, :3] if samples.shape[2] >= 3 else samples[:, :, :1]
    out = empty_plain(samples.shape[:2] + (3,), np.float32)  # (plain pages: ops/memory.py)
    if scale != 1 and src.shape[2] == 3 and src.dtype in (np.uint8, np.uint16):
        # one cv2 pass on all cores, bit-identical to numpy's copy and divide (the fresh pages
        # of a 4096x2731 frame cost 0.4 s single-threaded): v / scale in float32
        src = np.ascontiguousarray(src)
        cv2.divide(src.reshape(src.shape[0], -1), float(scale), dst=out.reshape(out.shape[0], -1), dtype=cv2.CV_32F)
        return out
    np.copyto(out, src, casting="unsafe")
    if scale != 1:
        np.divide(out, np.float32(scale), out=out)
    return out


def _check_finite_and_clip(path: Path, out: np.ndarray) -> np.ndarray:
    if not np.isfinite(np.sum(out, dtype=np.float64)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ImageReadError(
            f"{path}: floating-point image contains NaN or infinity",
            expected="finite sample values (0 to 1 is used; others are clipped)",
            actual=f"{bad:,} NaN/inf samples",
            fix="re-export the frame with NaN/inf replaced (or as a 16-bit integer TIFF)",
        )
    above = int(np.count_nonzero(out > 1.0))
    if above:
        log.warning(
            "%s: %s of %s samples are above 1 (max %.4g), as in a linear HDR frame; they are "
            "clipped to 1 (never rescaled); fix: scale the frames to 0..1 before stacking (the "
            "same factor for every frame of the stack)",
            path, f"{above:,}", f"{out.size:,}", float(out.max()),
        )
    np.clip(out, 0.0, 1.0, out=out)
    return out


# --------------------------------------------------------------------------------------------
# orientation

#: Orientation 2..8 -> numpy steps on an (H, W, ...) array giving the upright image, the same
#: transposition Pillow's ImageOps.exif_transpose applies.
_ORIENT_SWAPS = frozenset({5, 6, 7, 8})


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, 3)`` as stored -> upright (C-contiguous); 1 or unknown values: unchanged."""
    o = orientation
    if o == 2:
        out = pixels[:, ::-1]
    elif o == 3:
        out = pixels[::-1, ::-1]
    elif o == 4:
        out = pixels[::-1]
    elif o == 5:
        out = pixels.swapaxes(0, 1)
    elif o == 6:
        out = np.rot90(pixels, k=-1)
    elif o == 7:
        out = pixels[::-1, ::-1].swapaxes(0, 1)
    elif o == 8:
        out = np.rot90(pixels, k=1)
    else:
        return pixels
    return np.ascontiguousarray(out)


def _upright(info: ImageInfo, orientation: int) -> ImageInfo:
    if orientation not in _ORIENT_SWAPS:
        return info
    return _info(info.path, info.height, info.width, info.channels, info.bit_depth, info.kind)


def _exif_ifd0(blob: bytes) -> tuple[int, str, int] | None:
    """(TIFF header offset, struct byte order, IFD0 offset) of an EXIF block, or None."""
    base = 6 if blob.startswith(b"Exif\x00\x00") else 0
    head = blob[base:base + 8]
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    order = "<" if head[:2] == b"II" else ">"
    magic, ifd = struct.unpack(order + "HI", head[2:8])
    if magic != 42:
        return None
    return base, order, ifd


def _exif_entries(blob: bytes) -> Iterator[tuple[int, int, int, int]]:
    """IFD0 entries of an EXIF block: (tag, type, count, absolute offset of the value field)."""
    found = _exif_ifd0(blob)
    if found is None:
        return
    base, order, ifd = found
    start = base + ifd
    if start + 2 > len(blob):
        return
    (n,) = struct.unpack(order + "H", blob[start:start + 2])
    for i in range(n):
        at = start + 2 + 12 * i
        if at + 12 > len(blob):
            return
        tag, typ, count = struct.unpack(order + "HHI", blob[at:at + 8])
        yield tag, typ, count, at + 8


def exif_orientation(blob: bytes | None) -> int:
    """The EXIF Orientation (1-8) of a raw EXIF block; 1 when absent or unreadable."""
    if not blob:
        return 1
    try:
        found = _exif_ifd0(blob)
        for tag, typ, count, at in _exif_entries(blob):
            if tag == 0x0112 and typ == 3 and count >= 1 and found is not None:
                (value,) = struct.unpack(found[1] + "H", blob[at:at + 2])
                return int(value) if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def exif_reset_orientation(blob: bytes) -> bytes:
    """The same EXIF block with its Orientation set to 1 (patched in place: nothing else
    changes, maker notes and offsets included)."""
    found = _exif_ifd0(blob)
    if found is None:
        return blob
    out = bytearray(blob)
    for tag, typ, count, at in _exif_entries(blob):
        if tag == 0x0112 and typ == 3 and count >= 1:
            out[at:at + 2] = struct.pack(found[1] + "H", 1)
    return bytes(out)


#: TIFF IFD0 tags kept as "EXIF basics": ImageDescription, Make, Model, DateTime, Artist, Copyright.
BASIC_TAGS: tuple[int, ...] = (270, 271, 272, 306, 315, 33432)


def _tiff_basics_exif(page: Any) -> bytes | None:
    """A small EXIF block holding a TIFF page's basic text tags (for the output's metadata)."""
    values = {}
    for code in BASIC_TAGS:
        tag = page.tags.get(code)
        if tag is not None and isinstance(tag.value, str) and tag.value.strip():
            values[code] = tag.value
    if not values:
        return None
    exif = Image.Exif()
    for code, value in values.items():
        exif[code] = value
    return exif.tobytes()


# --------------------------------------------------------------------------------------------
# RAW


def _raw_output_size(sizes: Any) -> tuple[int, int]:
    """(width, height) of LibRaw's ``postprocess`` output, from the header sizes.

    ``sizes.width/height`` is the visible sensor area (``iwidth/iheight`` only differ with
    half-size decoding, which is not used); LibRaw stretches non-square pixels and swaps the
    axes for a 90-degree ``flip`` (5 or 6).
    """
    width, height = int(sizes.width), int(sizes.height)
    aspect = float(sizes.pixel_aspect or 1.0)
    if aspect != 1.0 and aspect > 0:
        if aspect < 1.0:
            height = int(height / aspect + 0.5)
        else:
            width = int(width * aspect + 0.5)
    if int(sizes.flip) & 4:
        width, height = height, width
    return width, height


def _raw(path: Path, max_pixels: int, decode: bool) -> tuple[ImageInfo, Frame | None]:
    import rawpy

    with rawpy.imread(str(path)) as raw:  # parses the header only; pixels load in postprocess
        width, height = _raw_output_size(raw.sizes)
        _check_size(path, width, height, max_pixels)
        info = _info(path, width, height, 3, 16, "raw")
        if not decode:
            return info, None
        rgb = raw.postprocess(use_camera_wb=True, output_bps=16, no_auto_bright=True)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageReadError(
            f"{path}: LibRaw returned an unexpected image",
            expected="(H, W, 3) RGB",
            actual=str(rgb.shape),
            fix="convert the RAW file to 16-bit TIFF with your RAW converter and stack that",
        )
    # LibRaw's output size is authoritative if it ever differs from the header estimate
    # (e.g. old Fuji SuperCCD files, rotated 45 degrees); the frame keeps what LibRaw gives.
    return info, Frame(path=path, pixels=_to_rgb(rgb, 65535.0), bit_depth=16, exif=_raw_exif(path), icc=None)


#: Exif-IFD tags read from a TIFF-based RAW (tifffile's names -> EXIF codes) for the output.
_RAW_EXIF_TAGS = {"ExposureTime": 33434, "FNumber": 33437, "ISOSpeedRatings": 34855, "FocalLength": 37386,
                  "DateTimeOriginal": 36867, "LensMake": 42035, "LensModel": 42036}


def _raw_exif(path: Path) -> bytes | None:
    """An EXIF block with the basics (Make, Model, DateTime, ...) and the exposure and lens tags
    of a TIFF-based RAW file (DNG, NEF, CR2, ARW, ...), read with tifffile; None for other RAW
    containers or when there is nothing. No Orientation: LibRaw has already turned the pixels."""
    try:
        import tifffile
        from PIL.TiffImagePlugin import IFDRational

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            exif = Image.Exif()
            for code in BASIC_TAGS:
                tag = page.tags.get(code)
                if tag is not None and isinstance(tag.value, str) and tag.value.strip():
                    exif[code] = tag.value.strip()
            sub_tag = page.tags.get("ExifTag")
            sub = sub_tag.value if sub_tag is not None and isinstance(sub_tag.value, dict) else {}
            ifd = exif.get_ifd(0x8769) if sub else None
            for name, code in _RAW_EXIF_TAGS.items():
                v = sub.get(name)
                if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v) and v[1]:
                    v = IFDRational(v[0], v[1])
                elif isinstance(v, tuple) and v:
                    v = v[0]
                if isinstance(v, (int, float, str, IFDRational)) and str(v).strip():
                    ifd[code] = v
            return exif.tobytes() if len(exif) or ifd else None
    except Exception:  # noqa: BLE001 - not a TIFF container (CR3, RAF, ...) or damaged tags: no EXIF
        return None


# --------------------------------------------------------------------------------------------
# TIFF


def _tiff(path: Path, max_pixels: int, decode: bool) -> tuple[ImageInfo, Frame | None]:
    import tifffile
    from tifffile import PHOTOMETRIC

    with tifffile.TiffFile(path, _multifile=False) as tf:
        page = tf.pages.first
        if not isinstance(page, tifffile.TiffPage):
            page = tf.pages[0]
        height, width = int(page.imagelength), int(page.imagewidth)
        _check_size(path, width, height, max_pixels)

        photometric = int(page.photometric)
        samples = int(page.samplesperpixel)
        if int(getattr(page, "imagedepth", 1)) > 1:
            raise _unsupported_tiff(path, "a volumetric (3-D) TIFF", "a 2-D image")
        pages = [page]
        # Colour channels stored as separate pages (ImageJ/OME hyperstacks): the series says so.
        if samples == 1 and photometric != PHOTOMETRIC.PALETTE and len(tf.pages) > 1:
            series = tf.series[0]
            dims = [(a, n) for a, n in zip(series.axes, series.shape) if n != 1]
            if [a for a, _ in dims] == ["C", "Y", "X"] and dims[0][1] in (3, 4):
                pages = [tf.pages[i] for i in range(3)]

        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if dtype is None or dtype.kind not in "buf" or (dtype.kind == "u" and dtype.itemsize > 2):
            raise _unsupported_tiff(
                path, f"{page.bitspersample}-bit {_sampleformat_name(page)} samples",
                "8- or 16-bit unsigned integer or floating-point samples",
            )
        if dtype.kind == "f":
            bit_depth = 32
        elif dtype.itemsize == 2:
            bit_depth = 16
        else:
            bit_depth = 8

        if photometric == PHOTOMETRIC.PALETTE:
            channels = 3
        elif photometric == PHOTOMETRIC.SEPARATED:
            if samples < 4:
                raise _unsupported_tiff(path, f"a {samples}-ink separated TIFF", "CMYK")
            channels = 4
        elif photometric in (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.RGB):
            channels = 3 if len(pages) > 1 else samples
        elif photometric == PHOTOMETRIC.YCBCR and int(page.compression) in (6, 7):  # JPEG
            channels = 3
        else:
            raise _unsupported_tiff(
                path, f"photometric {_enum_name(page.photometric)}", "gray, RGB, palette or CMYK"
            )

        # Truncation check from the header: every strip/tile must lie inside the file.
        file_size = os.path.getsize(path)
        for p in pages:
            ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts) if o and c]
            if ends and max(ends) > file_size:
                raise ImageReadError(
                    f"{path}: file is truncated",
                    expected=f"at least {max(ends):,} bytes (from the TIFF header)",
                    actual=f"{file_size:,} bytes",
                    fix=_REEXPORT,
                )

        orient_tag = page.tags.get(274)  # Orientation
        try:
            orientation = int(orient_tag.value) if orient_tag is not None else 1
        except (TypeError, ValueError):
            orientation = 1
        info = _upright(_info(path, width, height, channels, bit_depth, "tiff"), orientation)
        if not decode:
            return info, None
        basics = _tiff_basics_exif(page)

        icc_tag = page.tags.get(34675)  # InterColorProfile
        icc = bytes(icc_tag.value) if icc_tag is not None and icc_tag.value else None

        if len(pages) > 1:
            arr = np.stack([p.asarray() for p in pages], axis=-1)
        else:
            arr, axes = _tiff_page_pixels(path, page)
            # tifffile's page axes: Y, X, S (samples), optionally Z (depth, ruled out above).
            if "Z" in axes:
                arr = np.take(arr, 0, axis=axes.index("Z"))
                axes = axes.replace("Z", "")
            if axes == "SYX":
                arr = np.moveaxis(arr, 0, -1)
            elif axes not in ("YX", "YXS"):
                raise _unsupported_tiff(path, f"page layout {axes}", "YX, YXS or SYX")

        if arr.shape[:2] != (height, width):
            raise ImageReadError(
                f"{path}: decoded size differs from the header",
                expected=f"{width}x{height}",
                actual=f"{arr.shape[1]}x{arr.shape[0]}",
                fix=_REEXPORT,
            )

        if photometric == PHOTOMETRIC.PALETTE:
            cmap = np.asarray(page.colormap)
            if cmap is None or cmap.ndim != 2 or cmap.shape[0] != 3:
                raise _unsupported_tiff(path, "a palette TIFF without a colour map", "a colour map")
            cmap_scale = 255.0 if cmap.max() < 256 else 65535.0
            idx = arr[..., 0] if arr.ndim == 3 else arr
            idx = np.minimum(idx.astype(np.intp), cmap.shape[1] - 1)
            pixels = _orient(_to_rgb(np.moveaxis(cmap[:, idx], 0, -1), cmap_scale), orientation)
            return info, Frame(path=path, pixels=pixels, bit_depth=8, exif=basics, icc=icc)

        if photometric == PHOTOMETRIC.SEPARATED:
            pixels = _cmyk_to_rgb(path, arr, dtype, int(page.bitspersample))
        elif dtype.kind == "f":
            pixels = _check_finite_and_clip(path, _to_rgb(arr, 1.0))
        elif dtype.kind == "b":
            pixels = _to_rgb(arr, 1.0)
        else:
            bps = int(page.bitspersample)
            full = 8 * dtype.itemsize
            scale = float(2**bps - 1) if 0 < bps < full else float(2**full - 1)
            pixels = _to_rgb(arr, scale)
            if scale < float(2**full - 1):  # n-bit samples can exceed 2**n - 1; full-range ones cannot
                np.clip(pixels, 0.0, 1.0, out=pixels)
        if photometric == PHOTOMETRIC.MINISWHITE:
            np.subtract(np.float32(1.0), pixels, out=pixels)
        pixels = _orient(pixels, orientation)

    return info, Frame(path=path, pixels=pixels, bit_depth=16 if bit_depth != 8 else 8, exif=basics, icc=icc)


#: Per reading thread, the buffer that a large page's samples are read into: they are converted
#: to float32 straight away and never leave :func:`_tiff`, so the next frame of the same size
#: reuses the buffer's pages instead of faulting in fresh ones (4096x2731 8-bit: 0.028 -> 0.014 s
#: a frame, on the critical path of the read-ahead).
_SAMPLES = threading.local()


def _sample_buffer(page) -> np.ndarray | None:  # noqa: ANN001
    """A reusable ``page.shape`` array of the page's integer dtype, or None (tifffile allocates)
    for small pages and for anything else."""
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    shape = tuple(int(n) for n in page.shape)
    if dtype is None or dtype.kind != "u" or dtype.itemsize > 2 or math.prod(shape) * dtype.itemsize < PLAIN_FROM_BYTES:
        return None
    scratch = getattr(_SAMPLES, "scratch", None)
    if scratch is None:
        scratch = _SAMPLES.scratch = Scratch()
    return scratch.get(shape, dtype)


def _tiff_page_pixels(path: Path, page) -> tuple[np.ndarray, str]:  # noqa: ANN001
    """The first page's samples and tifffile's axes for them. A compression that tifffile
    decodes only with the optional ``imagecodecs`` package (LZW, the default of OpenCV, and of
    many raw converters and editors) is decoded by OpenCV's libtiff instead: the same samples,
    8 or 16 bits kept (``IMREAD_UNCHANGED``: no orientation applied, the caller applies the
    tag), channels reordered from BGR(A) to RGB(A)."""
    try:
        return page.asarray(out=_sample_buffer(page)), page.axes
    except ValueError as exc:
        if "imagecodecs" not in str(exc):
            raise
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]
    return np.ascontiguousarray(arr), "YXS" if arr.ndim == 3 else "YX"


def _cmyk_to_rgb(path: Path, arr: np.ndarray, dtype: np.dtype, bps: int) -> np.ndarray:
    """Naive CMYK -> RGB, ``rgb = (1 - cmy) * (1 - k)``, without a colour profile."""
    if dtype.kind == "f":
        cmyk = np.asarray(arr[..., :4], dtype=np.float32)
        if not np.isfinite(cmyk).all():
            _check_finite_and_clip(path, _to_rgb(cmyk, 1.0))
        cmyk = np.clip(cmyk, 0.0, 1.0)
    else:
        cmyk = arr[..., :4].astype(np.float32) / np.float32(2 ** min(bps, 8 * dtype.itemsize) - 1)
    rgb = (1.0 - cmyk[..., :3]) * (1.0 - cmyk[..., 3:4])
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)


def _unsupported_tiff(path: Path, actual: str, expected: str) -> ImageReadError:
    return ImageReadError(
        f"{path}: unsupported TIFF variant",
        expected=expected,
        actual=actual,
        fix="re-export the frame as an 8- or 16-bit RGB TIFF (or PNG)",
    )


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def _sampleformat_name(page: Any) -> str:
    return {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}.get(
        int(page.sampleformat), _enum_name(page.sampleformat)
    )


# --------------------------------------------------------------------------------------------
# PNG and JPEG (Pillow)


def _png(path: Path, max_pixels: int, decode: bool) -> tuple[ImageInfo, Frame | None]:
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR" or struct.unpack(">I", head[8:12])[0] != 13:
        raise ImageReadError(
            f"{path}: PNG header is missing or damaged",
            expected="an IHDR chunk right after the PNG signature",
            actual=f"{len(head)} header bytes" if len(head) < 33 else repr(head[12:16]),
            fix=_REEXPORT,
        )
    width, height = struct.unpack(">II", head[16:24])
    depth, colour_type = head[24], head[25]
    channels = _PNG_CHANNELS.get((depth, colour_type))
    if channels is None:
        raise ImageReadError(
            f"{path}: invalid PNG header",
            expected="a bit depth / colour type pair from the PNG specification",
            actual=f"bit depth {depth}, colour type {colour_type}",
            fix=_REEXPORT,
        )
    # The guard runs on our own parse of IHDR, before Pillow sees the file.
    _check_size(path, width, height, max_pixels)
    info = _info(path, width, height, channels, 16 if depth == 16 else 8, "png")

    # PngImageFile directly (not Image.open): Pillow's own bomb check lives in Image.open and
    # would refuse frames above its default limit that --max-pixels allows; ours ran above.
    with open(path, "rb") as fh:
        im = PngImagePlugin.PngImageFile(fh)  # chunks up to the first IDAT; no pixels
        # the orientation an eXIf chunk before the pixels gives (probe and read agree on it)
        orientation = exif_orientation(_exif_bytes(im))
        info = _upright(info, orientation)
        if not decode:
            return info, None
        _check_pillow_size(path, im, width, height)
        if depth == 16 and colour_type in (2, 6):
            high = _load_array(im)
            low = _png16_low_bytes(path, colour_type)
            if low is None:  # Pillow changed its internals: keep the 8 most significant bits
                pixels = _to_rgb(high, 255.0)
            else:
                samples = (high[:, :, :3].astype(np.uint16) << 8) | low[:, :, :3]
                pixels = _to_rgb(samples, 65535.0)
        else:
            pixels = _pillow_pixels(path, im)
        exif, icc = _pillow_metadata(im)
    pixels, exif = _apply_orientation(pixels, exif, orientation)
    return info, Frame(path=path, pixels=pixels, bit_depth=info.bit_depth, exif=exif, icc=icc)


def _png16_low_bytes(path: Path, colour_type: int) -> np.ndarray | None:
    """The low bytes of a 16-bit RGB(A) PNG's samples, via Pillow's C decoder.

    Pillow has no 16-bit-per-channel RGB mode: it unpacks 16-bit RGB PNG rows with rawmode
    ``RGB;16B``, keeping each sample's first (most significant) byte. Decoding the same
    stream again with ``RGB;16L`` keeps each sample's *second* byte instead, which in PNG's
    big-endian order is the least significant one. Unfiltering (which needs the 6- or 8-byte
    pixel stride) and Adam7 de-interlacing happen in C before unpacking, identically for both.
    """
    expected_raw = "RGB;16B" if colour_type == 2 else "RGBA;16B"
    low_raw = "RGB;16L" if colour_type == 2 else "RGBA;16L"
    with open(path, "rb") as fh:
        im = PngImagePlugin.PngImageFile(fh)
        if not im.tile or any(t.args != expected_raw for t in im.tile):
            return None
        im.tile = [t._replace(args=low_raw) for t in im.tile]
        return _load_array(im)


def _jpeg(path: Path, max_pixels: int, decode: bool) -> tuple[ImageInfo, Frame | None]:
    with open(path, "rb") as fh:
        im = JpegImagePlugin.JpegImageFile(fh)  # header only; no Pillow bomb check (see _png)
        width, height = im.size
        _check_size(path, width, height, max_pixels)
        orientation = exif_orientation(_exif_bytes(im))  # APP1 is read with the header
        info = _upright(_info(path, width, height, len(im.getbands()), 8, "jpeg"), orientation)
        if not decode:
            return info, None
        pixels = _pillow_pixels(path, im)
        exif, icc = _pillow_metadata(im)
    pixels, exif = _apply_orientation(pixels, exif, orientation)
    return info, Frame(path=path, pixels=pixels, bit_depth=8, exif=exif, icc=icc)


def _exif_bytes(im: Image.Image) -> bytes | None:
    exif = im.info.get("exif")
    return bytes(exif) if isinstance(exif, (bytes, bytearray)) and exif else None


def _apply_orientation(pixels: np.ndarray, exif: bytes | None, orientation: int) -> tuple[np.ndarray, bytes | None]:
    if orientation == 1:
        return pixels, exif
    return _orient(pixels, orientation), exif_reset_orientation(exif) if exif else exif


def _check_pillow_size(path: Path, im: Image.Image, width: int, height: int) -> None:
    if im.size != (width, height):
        raise ImageReadError(
            f"{path}: inconsistent image header",
            expected=f"{width}x{height}",
            actual=f"{im.size[0]}x{im.size[1]}",
            fix=_REEXPORT,
        )


def _load_array(im: Image.Image) -> np.ndarray:
    im.load()
    return np.asarray(im)


def _pillow_pixels(path: Path, im: Image.Image) -> np.ndarray:
    """Any Pillow mode a PNG or JPEG opens in -> ``(H, W, 3) float32 in [0, 1]``."""
    im.load()
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _to_rgb(np.asarray(im), 65535.0)
    if mode == "I":  # 16-bit gray PNG in older Pillow; values 0..65535
        out = _to_rgb(np.asarray(im), 65535.0)
        return np.clip(out, 0.0, 1.0, out=out)
    if mode == "F":
        return _check_finite_and_clip(path, _to_rgb(np.asarray(im), 1.0))
    if mode == "1":
        return _to_rgb(np.asarray(im), 1.0)
    if mode in ("L", "LA", "La", "RGB", "RGBA", "RGBX", "RGBa"):
        return _to_rgb(np.asarray(im), 255.0)
    # P, PA, CMYK, YCbCr, LAB, HSV: let Pillow convert to 8-bit RGB.
    return _to_rgb(np.asarray(im.convert("RGB")), 255.0)


def _pillow_metadata(im: Image.Image) -> tuple[bytes | None, bytes | None]:
    exif = im.info.get("exif")
    icc = im.info.get("icc_profile")
    exif = bytes(exif) if isinstance(exif, (bytes, bytearray)) and exif else None
    icc = bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None
    return exif, icc
