"""File types focusstack reads and writes, and the two records the I/O layer hands out.

* :class:`ImageInfo`: what a file's header says (size, channels, bit depth), read without decoding
  pixels. ``check_stack`` compares these before any frame is decoded.
* :class:`Frame`: a decoded frame, always ``(H, W, 3) float32 in [0, 1]``, RGB, with the metadata
  (EXIF, ICC) that the writer can carry over to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Camera RAW suffixes, decoded with rawpy (LibRaw).
RAW_EXTENSIONS: frozenset[str] = frozenset(
    {".dng", ".nef", ".cr2", ".cr3", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"}
)
#: Suffixes of ordinary image files (PNG and JPEG through Pillow, TIFF through tifffile).
RASTER_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
#: Every lower-case suffix an input frame may have.
SUPPORTED_EXTENSIONS: frozenset[str] = RASTER_EXTENSIONS | RAW_EXTENSIONS
#: Suffixes an output image may have, mapped to the format written.
OUTPUT_FORMATS: dict[str, str] = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}
OUTPUT_EXTENSIONS: frozenset[str] = frozenset(OUTPUT_FORMATS)

KINDS = ("raw", "tiff", "png", "jpeg")


def format_extensions(extensions: frozenset[str] | set[str]) -> str:
    """``".dng, .jpeg, .jpg, ..."``: a sorted, readable list for error messages."""
    return ", ".join(sorted(extensions))


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says; no pixels are decoded to get it.

    ``width``/``height`` are the size of the frame :func:`~focusstack.io.read_image` returns
    after orientation (EXIF or TIFF Orientation 5-8 swap them; for RAW: LibRaw's output
    size, after its orientation flip). ``channels`` is the number of
    channels stored in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA/CMYK; RAW: 3).
    ``bit_depth`` is 8 or 16 for integer samples and 32 for floating-point TIFF samples (RAW: 16,
    the depth LibRaw decodes to). ``kind`` is ``"raw"``, ``"tiff"``, ``"png"`` or ``"jpeg"``,
    taken from the file's content (RAW: from its suffix).
    """

    path: Path
    width: int
    height: int
    channels: int
    bit_depth: int
    kind: str

    @property
    def pixels(self) -> int:
        """``width * height``."""
        return self.width * self.height

    @property
    def size_text(self) -> str:
        """``"4128x2176"`` (width x height), as error messages print sizes."""
        return f"{self.width}x{self.height}"


@dataclass
class Frame:
    """One decoded frame.

    ``pixels``: ``(H, W, 3) float32 in [0, 1]``, RGB, C-contiguous. Alpha is dropped, gray is
    replicated to three channels, orientation is applied (EXIF for PNG/JPEG, the TIFF tag,
    LibRaw's flip): pixels come upright, and ``exif`` then says Orientation 1.

    ``bit_depth``: 8 or 16, the precision the source had, used to pick the output depth:
    8-bit PNG/JPEG/TIFF -> 8; 16-bit PNG/TIFF -> 16; RAW -> 16 (LibRaw decodes to 16 bits);
    floating-point TIFF -> 16 (there is no float output, 16 bits is the closest it gets).

    ``exif``: the raw EXIF block as Pillow gives it (starting ``b"Exif\\0\\0"``); for TIFF a
    block holding the file's basic tags (Make, Model, DateTime, ...), or ``None``; always
    ``None`` for RAW. ``icc``: the embedded ICC profile bytes, or ``None``.
    """

    path: Path
    pixels: np.ndarray
    bit_depth: int
    exif: bytes | None = None
    icc: bytes | None = None

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.ndim != 3 or px.shape[2] != 3 or px.dtype != np.float32:
            shape = getattr(px, "shape", None)
            dtype = getattr(px, "dtype", type(px).__name__)
            raise ValueError(f"Frame.pixels must be (H, W, 3) float32, got {shape} {dtype}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"Frame.bit_depth must be 8 or 16, got {self.bit_depth!r}")

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])
