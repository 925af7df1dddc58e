"""A small PNG encoder for 16-bit RGB, which Pillow cannot write.

Pure numpy + zlib: the IHDR, iCCP, eXIf, IDAT and IEND chunks are written by hand. Rows are
filtered with the PNG "Paeth" or "Up" filter (vectorised over whole row blocks, so the cost is
a few numpy passes) and compressed in blocks, so memory stays near one extra row block.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ROWS_PER_BLOCK = 256
_IDAT_TARGET = 1 << 20  # bytes of compressed data per IDAT chunk
_FILTERS = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4}


def write_chunk(fp: BinaryIO, kind: bytes, data: bytes) -> None:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    fp.write(struct.pack(">I", len(data)))
    fp.write(kind)
    fp.write(data)
    fp.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))


def filter_rows(rows: np.ndarray, prior: np.ndarray, bpp: int, filter_type: int) -> np.ndarray:
    """PNG-filter a block of scanlines.

    Args:
        rows: ``(n, stride) uint8``, the raw (big-endian) scanline bytes.
        prior: ``(stride,) uint8``, the scanline just above ``rows[0]`` (zeros for the first).
        bpp: bytes per complete pixel (6 for 16-bit RGB).
        filter_type: 0 none, 1 sub, 2 up, 3 average, 4 paeth (PNG specification, section 9).

    Returns:
        ``(n, 1 + stride) uint8``: each row prefixed with its filter byte.
    """
    n, stride = rows.shape
    up = np.empty_like(rows)
    up[0] = prior
    up[1:] = rows[:-1]
    left = np.zeros_like(rows)
    left[:, bpp:] = rows[:, :-bpp]
    if filter_type == 0:
        filtered = rows
    elif filter_type == 1:
        filtered = rows - left
    elif filter_type == 2:
        filtered = rows - up
    elif filter_type == 3:
        filtered = rows - ((left.astype(np.uint16) + up) >> 1).astype(np.uint8)
    elif filter_type == 4:
        upleft = np.zeros_like(rows)
        upleft[:, bpp:] = up[:, :-bpp]
        a, b, c = (x.astype(np.int16) for x in (left, up, upleft))
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)
        filtered = rows - pred
    else:
        raise ValueError(f"unknown PNG filter type {filter_type}")
    out = np.empty((n, stride + 1), dtype=np.uint8)
    out[:, 0] = filter_type
    out[:, 1:] = filtered
    return out


def encode_png16(
    fp: BinaryIO,
    samples: np.ndarray,
    *,
    icc: bytes | None = None,
    exif: bytes | None = None,
    filter_name: str = "paeth",
    level: int = 3,
) -> None:
    """Write ``samples`` as a 16-bit RGB PNG (colour type 2, not interlaced) to ``fp``.

    Args:
        fp: a binary file opened for writing.
        samples: ``(H, W, 3) uint16``, 0..65535.
        icc: ICC profile bytes for an iCCP chunk, or ``None``.
        exif: EXIF bytes for an eXIf chunk (a leading ``b"Exif\\0\\0"`` is removed), or ``None``.
        filter_name: ``"paeth"`` (default, smallest files for photographs), ``"up"``, ``"sub"``,
            ``"average"`` or ``"none"``; one filter for every row.
        level: zlib compression level 0..9.
    """
    if samples.ndim != 3 or samples.shape[2] != 3 or samples.dtype != np.uint16:
        raise ValueError(f"expected (H, W, 3) uint16, got {samples.shape} {samples.dtype}")
    height, width = samples.shape[:2]
    if not (1 <= width < 2**31 and 1 <= height < 2**31):
        raise ValueError(f"PNG size out of range: {width}x{height}")
    filter_type = _FILTERS[filter_name]
    bpp, stride = 6, width * 6

    fp.write(PNG_SIGNATURE)
    write_chunk(fp, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
    if icc:
        write_chunk(fp, b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc, 9))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        write_chunk(fp, b"eXIf", body)

    compressor = zlib.compressobj(level)
    pending: list[bytes] = []
    pending_size = 0
    prior = np.zeros(stride, dtype=np.uint8)
    for top in range(0, height, _ROWS_PER_BLOCK):
        block = np.ascontiguousarray(samples[top : top + _ROWS_PER_BLOCK], dtype=">u2")
        rows = block.view(np.uint8).reshape(block.shape[0], stride)
        data = compressor.compress(filter_rows(rows, prior, bpp, filter_type).tobytes())
        prior = rows[-1].copy()
        if data:
            pending.append(data)
            pending_size += len(data)
        if pending_size >= _IDAT_TARGET:
            write_chunk(fp, b"IDAT", b"".join(pending))
            pending, pending_size = [], 0
    pending.append(compressor.flush())
    write_chunk(fp, b"IDAT", b"".join(pending))
    write_chunk(fp, b"IEND", b"")
