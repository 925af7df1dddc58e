"""Tests for focusstack.io: readers, writers, stack collection, atomic output, image bombs, fuzz.

Real data is used by path from ../shared/data (never copied into the repo); those tests skip
when it is absent. Everything else is generated here from seeded random numbers, small.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from focusstack.errors import ImageReadError, ImageWriteError, OutputExistsError, StackError, UsageError
from focusstack.io import (
    SUPPORTED_EXTENSIONS,
    Frame,
    ImageInfo,
    atomic_output,
    check_stack,
    collect_stack,
    natural_sort,
    output_bit_depth,
    probe_image,
    read_image,
    write_image,
)
from focusstack.io import writers as io_writers
from focusstack.io.png16 import PNG_SIGNATURE, encode_png16, filter_rows, write_chunk

SHARED = Path(os.environ.get("FOCUSSTACK_SHARED", Path(__file__).parents[1].parent / "shared")) / "data"
DNG = SHARED / "raw" / "Blackmagic.dng"
NEF = SHARED / "raw" / "Nikon_uncompressed.nef"
PCB7 = SHARED / "stacks" / "pcb7"
PCB10 = SHARED / "stacks" / "pcb10"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return path


# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def io_rng() -> np.random.Generator:
    return np.random.default_rng(20240531)


@pytest.fixture(scope="module")
def io_icc() -> bytes:
    try:
        from PIL import ImageCms

        return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    except Exception as exc:  # Pillow built without LittleCMS
        pytest.skip(f"ImageCms not available: {exc}")


@pytest.fixture(scope="module")
def io_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "focusstack-test"  # Make
    exif[0x0110] = "unit camera"  # Model
    return exif.tobytes()


def _exif_make(blob: bytes | None) -> str | None:
    assert blob is not None
    exif = Image.Exif()
    exif.load(blob)
    return exif.get(0x010F)


def _smooth(rng: np.random.Generator, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth, seeded (H, W, 3) float32 image in [0, 1] (JPEG-friendly)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    chans = [0.5 + 0.4 * np.sin(xx / (7 + 3 * c) + yy / (11 + 2 * c) + phase[c]) for c in range(3)]
    return np.clip(np.stack(chans, axis=-1), 0, 1).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


_ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def _png16_file(samples: np.ndarray, *, alpha: np.ndarray | None = None, interlace: bool = False) -> bytes:
    """An independent 16-bit RGB(A) PNG writer for reader tests: every filter type, optional Adam7."""
    if alpha is not None:
        samples = np.concatenate([samples, alpha[..., None]], axis=-1)
    channels = samples.shape[2]
    bpp = 2 * channels
    raw = bytearray()
    for r0, c0, dr, dc in _ADAM7 if interlace else [(0, 0, 1, 1)]:
        sub = samples[r0::dr, c0::dc]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        rows = np.ascontiguousarray(sub, dtype=">u2").view(np.uint8).reshape(sub.shape[0], -1)
        prior = np.zeros(rows.shape[1], dtype=np.uint8)
        for i in range(rows.shape[0]):
            raw += filter_rows(rows[i : i + 1], prior, bpp, i % 5).tobytes()
            prior = rows[i]
    out = io.BytesIO()
    out.write(PNG_SIGNATURE)
    h, w = samples.shape[:2]
    write_chunk(out, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if alpha is not None else 2, 0, 0, int(interlace)))
    write_chunk(out, b"IDAT", zlib.compress(bytes(raw)))
    write_chunk(out, b"IEND", b"")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A crafted 'bomb': a valid PNG header claiming width x height, with a tiny IDAT."""
    out = io.BytesIO()
    out.write(PNG_SIGNATURE)
    write_chunk(out, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    write_chunk(out, b"IDAT", zlib.compress(b"\x00" * 64))
    write_chunk(out, b"IEND", b"")
    return out.getvalue()


def _tiff_header_only(width: int, height: int) -> bytes:
    """A crafted little-endian TIFF whose IFD claims width x height 8-bit gray, no pixel data."""
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
        (273, 4, 200), (277, 3, 1), (278, 4, height), (279, 4, min(width * height, 2**32 - 1)),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, 1, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, 1, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


def _jpeg_bytes(rng: np.random.Generator, h: int = 48, w: int = 64, quality: int = 90) -> bytes:
    u8 = np.rint(_smooth(rng, h, w) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(u8, "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 marker's dimensions (a JPEG 'bomb' header)."""
    pos = data.index(b"\xff\xc0")
    out = bytearray(data)
    out[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def _write_png(path: Path, u8: np.ndarray) -> Path:
    Image.fromarray(u8).save(path)
    return path


def _assert_read_error(path: Path, *, match: str | None = None) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert path.name in str(info.value)
    if match:
        assert match.lower() in str(info.value).lower()
    return info.value


# --------------------------------------------------------------------------------------------
# constants and records


def test_supported_extensions() -> None:
    assert isinstance(SUPPORTED_EXTENSIONS, frozenset)
    for ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dng", ".nef", ".cr2", ".cr3", ".arw",
                ".orf", ".rw2", ".raf", ".pef", ".srw"):
        assert ext in SUPPORTED_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in SUPPORTED_EXTENSIONS)


def test_frame_validates_shape() -> None:
    with pytest.raises(ValueError):
        Frame(path=Path("x.png"), pixels=np.zeros((4, 4), np.float32), bit_depth=8)
    with pytest.raises(ValueError):
        Frame(path=Path("x.png"), pixels=np.zeros((4, 4, 3), np.float32), bit_depth=12)


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize(("name", "bit_depth"), [("a.png", 8), ("b.png", 16), ("c.tif", 8), ("d.tiff", 16)])
def test_lossless_round_trip_is_exact(tmp_path: Path, io_rng: np.random.Generator, name: str, bit_depth: int) -> None:
    top = 2**bit_depth - 1
    ints = io_rng.integers(0, top + 1, size=(29, 41, 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    ints[0, 0] = 0
    ints[0, 1] = top  # both ends of the range
    pixels = (ints.astype(np.float64) / top).astype(np.float32)
    out = write_image(tmp_path / name, pixels, bit_depth=bit_depth)
    assert out == tmp_path / name
    info = probe_image(out)
    frame = read_image(out)
    assert (info.width, info.height, info.bit_depth) == (41, 29, bit_depth)
    assert frame.bit_depth == bit_depth
    assert frame.pixels.dtype == np.float32 and frame.pixels.shape == (29, 41, 3)
    back = np.rint(frame.pixels.astype(np.float64) * top).astype(np.int64)
    np.testing.assert_array_equal(back, ints.astype(np.int64))
    assert os.listdir(tmp_path) == [name]  # no temp files left


def test_png16_is_a_real_16bit_png(tmp_path: Path, io_rng: np.random.Generator) -> None:
    ints = io_rng.integers(0, 65536, size=(17, 23, 3), dtype=np.uint16)
    out = write_image(tmp_path / "x.png", ints / np.float32(65535), bit_depth=16)
    data = out.read_bytes()
    kinds = [k for k, _ in _png_chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    ihdr = _png_chunks(data)[0][1]
    assert struct.unpack(">IIBB", ihdr[:10]) == (23, 17, 16, 2)
    with Image.open(out) as im:  # an independent decoder: Pillow keeps the high bytes
        im.load()
        np.testing.assert_array_equal(np.asarray(im), (ints >> 8).astype(np.uint8))


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_read_foreign_png16_all_filters(tmp_path: Path, io_rng: np.random.Generator, interlace: bool, with_alpha: bool) -> None:
    ints = io_rng.integers(0, 65536, size=(19, 13, 3), dtype=np.uint16)
    alpha = io_rng.integers(0, 65536, size=(19, 13), dtype=np.uint16) if with_alpha else None
    path = tmp_path / "foreign.png"
    path.write_bytes(_png16_file(ints, alpha=alpha, interlace=interlace))
    frame = read_image(path)
    assert frame.bit_depth == 16
    np.testing.assert_array_equal(np.rint(frame.pixels * 65535).astype(np.uint16), ints)


def test_jpeg_round_trip_psnr(tmp_path: Path, io_rng: np.random.Generator) -> None:
    pixels = _smooth(io_rng, 64, 96)
    out = write_image(tmp_path / "x.jpg", pixels, bit_depth=8)
    frame = read_image(out)
    assert frame.bit_depth == 8 and frame.pixels.shape == pixels.shape
    assert _psnr(frame.pixels, pixels) > 35.0


@pytest.mark.parametrize(("name", "bit_depth"), [("a.png", 8), ("b.png", 16), ("c.jpg", 8), ("d.tif", 8), ("e.tif", 16)])
def test_icc_survives_round_trip(tmp_path: Path, io_rng: np.random.Generator, io_icc: bytes, name: str, bit_depth: int) -> None:
    out = write_image(tmp_path / name, _smooth(io_rng), bit_depth=bit_depth, icc=io_icc)
    assert read_image(out).icc == io_icc


@pytest.mark.parametrize(("name", "bit_depth"), [("a.png", 8), ("b.png", 16), ("c.jpeg", 8)])
def test_exif_survives_round_trip(tmp_path: Path, io_rng: np.random.Generator, io_exif: bytes, name: str, bit_depth: int) -> None:
    out = write_image(tmp_path / name, _smooth(io_rng), bit_depth=bit_depth, exif=io_exif)
    assert _exif_make(read_image(out).exif) == "focusstack-test"


def test_tiff_write_keeps_exif_basics_with_orientation_1(tmp_path: Path, io_rng: np.random.Generator, io_exif: bytes) -> None:
    out = write_image(tmp_path / "x.tif", _smooth(io_rng), bit_depth=16, exif=io_exif)
    with tifffile.TiffFile(out) as tf:
        tags = tf.pages[0].tags
        assert tags[271].value == "focusstack-test" and tags[272].value == "unit camera"
        assert int(tags[274].value) == 1
    frame = read_image(out)
    assert frame.bit_depth == 16 and _exif_make(frame.exif) == "focusstack-test"


def test_write_clips_out_of_range(tmp_path: Path) -> None:
    pixels = np.array([[[-0.5, 0.5, 1.5]]], dtype=np.float32)
    frame = read_image(write_image(tmp_path / "x.png", pixels, bit_depth=8))
    np.testing.assert_array_equal(np.rint(frame.pixels * 255), [[[0, 128, 255]]])


# --------------------------------------------------------------------------------------------
# real RAW files


@pytest.mark.parametrize(("path", "size"), [(DNG, (2176, 4128)), (NEF, (593, 869))], ids=["dng", "nef"])
def test_raw_decodes_and_probe_matches(path: Path, size: tuple[int, int]) -> None:
    _need(path)
    info = probe_image(path)
    assert info.kind == "raw" and info.bit_depth == 16 and info.channels == 3
    assert (info.height, info.width) == size
    frame = read_image(path)
    assert frame.pixels.shape == (info.height, info.width, 3)
    assert frame.pixels.dtype == np.float32 and frame.bit_depth == 16
    assert 0.0 <= float(frame.pixels.min()) and float(frame.pixels.max()) <= 1.0
    assert float(frame.pixels.std()) > 0.01  # real content, not a blank frame


def test_truncated_raw(tmp_path: Path) -> None:
    cut = tmp_path / "cut.dng"
    with open(_need(DNG), "rb") as fh:
        cut.write_bytes(fh.read(64 * 1024))
    _assert_read_error(cut, match="truncated")


def test_raw_suffix_on_non_raw(tmp_path: Path, io_rng: np.random.Generator) -> None:
    path = tmp_path / "fake.nef"
    path.write_bytes(_jpeg_bytes(io_rng))
    _assert_read_error(path)
    with pytest.raises(ImageReadError, match="fake.nef"):
        probe_image(path)


# --------------------------------------------------------------------------------------------
# TIFF variants


def test_tiff_gray_uint16(tmp_path: Path, io_rng: np.random.Generator) -> None:
    gray = io_rng.integers(0, 65536, size=(9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", gray)
    info = probe_image(tmp_path / "g.tif")
    assert (info.channels, info.bit_depth, info.kind) == (1, 16, "tiff")
    frame = read_image(tmp_path / "g.tif")
    assert frame.bit_depth == 16
    for c in range(3):
        np.testing.assert_array_equal(np.rint(frame.pixels[..., c] * 65535).astype(np.uint16), gray)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_large_tiffs_read_in_turn_keep_their_own_pixels(tmp_path: Path, io_rng: np.random.Generator, dtype: type) -> None:
    """Large pages are read into one reused sample buffer per thread (readers._sample_buffer):
    a frame read earlier must keep its own pixels when the next one fills the buffer, and the
    buffer must be reused (same pages) rather than allocated per frame."""
    from focusstack.io import readers

    top = np.iinfo(dtype).max
    h, w = (2048 if np.dtype(dtype).itemsize == 1 else 1024), 1400  # 8.6 MB: above PLAIN_FROM_BYTES (8 MiB)
    a = io_rng.integers(0, top + 1, size=(h, w, 3), dtype=dtype)
    b = (top - a).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", a, photometric="rgb")
    tifffile.imwrite(tmp_path / "b.tif", b, photometric="rgb")
    first = read_image(tmp_path / "a.tif")
    buf = readers._SAMPLES.scratch.get((h, w, 3), dtype)
    second = read_image(tmp_path / "b.tif")
    assert readers._SAMPLES.scratch.get((h, w, 3), dtype) is buf
    assert not np.shares_memory(first.pixels, buf) and not np.shares_memory(second.pixels, buf)
    np.testing.assert_array_equal(np.rint(first.pixels * top).astype(dtype), a)
    np.testing.assert_array_equal(np.rint(second.pixels * top).astype(dtype), b)


def test_tiff_rgba_drops_alpha(tmp_path: Path, io_rng: np.random.Generator) -> None:
    rgba = io_rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert probe_image(tmp_path / "a.tif").channels == 4
    frame = read_image(tmp_path / "a.tif")
    assert frame.bit_depth == 8
    np.testing.assert_array_equal(np.rint(frame.pixels * 255).astype(np.uint8), rgba[..., :3])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_tiff_float(tmp_path: Path, io_rng: np.random.Generator, dtype: type) -> None:
    values = io_rng.random((6, 8, 3)).astype(dtype)
    values[0, 0] = [1.5, -0.25, 0.5]  # out of range -> clipped
    tifffile.imwrite(tmp_path / "f.tif", values, photometric="rgb")
    info = probe_image(tmp_path / "f.tif")
    assert info.bit_depth == 32
    frame = read_image(tmp_path / "f.tif")
    assert frame.bit_depth == 16  # float inputs give 16-bit outputs
    expected = np.clip(values.astype(np.float32), 0, 1)
    np.testing.assert_array_equal(frame.pixels, expected)


def test_tiff_float_gray_with_singleton_channel(tmp_path: Path, io_rng: np.random.Generator) -> None:
    values = io_rng.random((6, 8, 1)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", values)
    frame = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(frame.pixels, np.repeat(values, 3, axis=2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_tiff_float_nan_is_an_error(tmp_path: Path, bad: float) -> None:
    values = np.full((4, 4, 3), 0.5, dtype=np.float32)
    values[2, 1, 0] = bad
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, values, photometric="rgb")
    _assert_read_error(path, match="NaN")


def test_tiff_planar(tmp_path: Path, io_rng: np.random.Generator) -> None:
    rgb = io_rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    info = probe_image(tmp_path / "p.tif")
    assert (info.width, info.height, info.channels) == (9, 6, 3)
    np.testing.assert_array_equal(np.rint(read_image(tmp_path / "p.tif").pixels * 255).astype(np.uint8), rgb)


def test_tiff_multipage_reads_first_page(tmp_path: Path, io_rng: np.random.Generator) -> None:
    pages = io_rng.integers(0, 256, size=(3, 5, 6, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", pages, photometric="rgb")
    np.testing.assert_array_equal(np.rint(read_image(tmp_path / "m.tif").pixels * 255).astype(np.uint8), pages[0])


def test_tiff_imagej_channels_as_pages(tmp_path: Path, io_rng: np.random.Generator) -> None:
    chw = io_rng.integers(0, 65536, size=(3, 5, 7), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", chw, imagej=True, metadata={"axes": "CYX"})
    info = probe_image(tmp_path / "ij.tif")
    assert info.channels == 3
    frame = read_image(tmp_path / "ij.tif")
    np.testing.assert_array_equal(np.rint(frame.pixels * 65535).astype(np.uint16), np.moveaxis(chw, 0, -1))


def test_tiff_palette_and_miniswhite(tmp_path: Path, io_rng: np.random.Generator) -> None:
    idx = io_rng.integers(0, 4, size=(5, 6), dtype=np.uint8)
    cmap = np.zeros((3, 256), dtype=np.uint16)
    cmap[:, :4] = [[0, 65535, 0, 65535], [0, 0, 65535, 65535], [0, 0, 0, 65535]]
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    frame = read_image(tmp_path / "pal.tif")
    np.testing.assert_array_equal(frame.pixels, np.moveaxis(cmap[:, idx], 0, -1) / np.float32(65535))

    gray = io_rng.integers(0, 256, size=(5, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "mw.tif", gray, photometric="miniswhite")
    frame = read_image(tmp_path / "mw.tif")
    np.testing.assert_array_equal(np.rint(frame.pixels[..., 1] * 255).astype(np.uint8), 255 - gray)


def test_tiff_signed_integers_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((4, 4), dtype=np.int16))
    with pytest.raises(ImageReadError, match="s.tif"):
        probe_image(tmp_path / "s.tif")


# --------------------------------------------------------------------------------------------
# PNG / JPEG modes


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16"])
def test_png_modes(tmp_path: Path, io_rng: np.random.Generator, mode: str) -> None:
    rgb = io_rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    if mode == "I;16":
        gray16 = io_rng.integers(0, 65536, size=(6, 7), dtype=np.uint16)
        im = Image.fromarray(gray16)
        assert im.mode == "I;16"
        expected = np.repeat(gray16[..., None] / np.float32(65535), 3, axis=2)
        depth = 16
    else:
        im = Image.fromarray(rgb, "RGB").convert(mode)
        expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        depth = 8
    im.save(tmp_path / "m.png")
    frame = read_image(tmp_path / "m.png")
    assert frame.bit_depth == depth
    np.testing.assert_allclose(frame.pixels, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_jpeg_modes(tmp_path: Path, io_rng: np.random.Generator, mode: str) -> None:
    rgb = np.rint(_smooth(io_rng, 16, 24) * 255).astype(np.uint8)
    Image.fromarray(rgb).convert(mode).save(tmp_path / "m.jpg", quality=95)
    info = probe_image(tmp_path / "m.jpg")
    assert info.channels == len(mode) and info.kind == "jpeg"
    frame = read_image(tmp_path / "m.jpg")
    with Image.open(tmp_path / "m.jpg") as im:
        expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(frame.pixels, expected, atol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exif_orientation_is_applied_like_pillow(tmp_path: Path, io_rng: np.random.Generator, orientation: int, fmt: str) -> None:
    from PIL import ImageOps

    from focusstack.io.readers import exif_orientation

    u8 = np.rint(_smooth(io_rng, 16, 24) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "cam"
    exif[0x0112] = orientation
    path = tmp_path / f"o.{'png' if fmt == 'png' else 'jpg'}"
    Image.fromarray(u8).save(path, exif=exif.tobytes(), **({"quality": 100} if fmt == "jpeg" else {}))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255
    info = probe_image(path)
    frame = read_image(path)
    assert frame.pixels.shape == expected.shape
    assert (info.height, info.width) == expected.shape[:2]
    np.testing.assert_allclose(frame.pixels, expected, atol=1e-6)
    assert exif_orientation(frame.exif) == 1 and _exif_make(frame.exif) == "cam"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_tiff_orientation_tag_is_applied(tmp_path: Path, io_rng: np.random.Generator, orientation: int) -> None:
    from PIL import ImageOps

    u8 = np.rint(_smooth(io_rng, 10, 14) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "o.tif", u8, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(u8)
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im), dtype=np.float32) / 255
    assert (probe_image(tmp_path / "o.tif").height, probe_image(tmp_path / "o.tif").width) == expected.shape[:2]
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif").pixels, expected)


def test_rotated_frames_stack_with_upright_ones(tmp_path: Path, io_rng: np.random.Generator) -> None:
    """A camera frame stored sideways with Orientation 6 beside the same scene stored upright:
    the sizes agree once oriented (the old reader called it a size mismatch)."""
    u8 = np.rint(_smooth(io_rng, 12, 20) * 255).astype(np.uint8)
    (tmp_path / "s").mkdir()
    Image.fromarray(u8).save(tmp_path / "s" / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(u8, k=1))).save(tmp_path / "s" / "b.png", exif=exif.tobytes())
    infos = check_stack(collect_stack([tmp_path / "s"]))
    assert [(i.width, i.height) for i in infos] == [(20, 12), (20, 12)]
    np.testing.assert_array_equal(read_image(tmp_path / "s" / "b.png").pixels, read_image(tmp_path / "s" / "a.png").pixels)


def test_content_decides_format(tmp_path: Path, io_rng: np.random.Generator) -> None:
    path = tmp_path / "actually_jpeg.tif"
    path.write_bytes(_jpeg_bytes(io_rng))
    assert probe_image(path).kind == "jpeg"
    assert read_image(path).pixels.shape == (48, 64, 3)


def test_real_jpeg_stack_frame() -> None:
    first = natural_sort(_need(PCB7).glob("*.jpg"))[0]
    info = probe_image(first)
    assert (info.width, info.height, info.kind, info.bit_depth) == (2048, 1536, "jpeg", 8)


# --------------------------------------------------------------------------------------------
# read errors: each names the file


def test_truncated_jpeg(tmp_path: Path, io_rng: np.random.Generator) -> None:
    data = _jpeg_bytes(io_rng, 96, 128)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path, match="truncated")


def test_truncated_real_jpeg(tmp_path: Path) -> None:
    src = natural_sort(_need(PCB7).glob("*.jpg"))[0]
    path = tmp_path / src.name
    with open(src, "rb") as fh:
        path.write_bytes(fh.read(src.stat().st_size // 2))
    _assert_read_error(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path: Path, io_rng: np.random.Generator, compression: str | None) -> None:
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, io_rng.integers(0, 65536, size=(64, 80, 3), dtype=np.uint16), compression=compression)
    data = full.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path, match="truncated")


def test_truncated_png_probes_but_does_not_read(tmp_path: Path, io_rng: np.random.Generator) -> None:
    full = write_image(tmp_path / "full.png", io_rng.random((64, 64, 3), dtype=np.float32), bit_depth=8)
    data = full.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert probe_image(path).width == 64  # the header is intact: probe never decodes pixels
    _assert_read_error(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    err = _assert_read_error(path)
    assert "text" in str(err)
    with pytest.raises(ImageReadError, match="notes.png"):
        probe_image(path)


def test_zero_byte_file(tmp_path: Path) -> None:
    for name in ("empty.png", "empty.jpg", "empty.tif", "empty.dng"):
        path = tmp_path / name
        path.write_bytes(b"")
        _assert_read_error(path, match="empty")


def test_unknown_extension_missing_file_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "frame.webp"
    path.write_bytes(b"RIFF0000WEBP")
    err = _assert_read_error(path)
    assert ".tif" in str(err)  # lists what is supported
    _assert_read_error(tmp_path / "missing.png", match="not found")
    (tmp_path / "dir.png").mkdir()
    _assert_read_error(tmp_path / "dir.png", match="folder")


def test_bad_max_pixels(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        probe_image(tmp_path / "x.png", max_pixels=0)


# --------------------------------------------------------------------------------------------
# image bombs


@pytest.mark.parametrize("kind", ["png", "jpg", "tif"])
def test_bomb_refused_fast(tmp_path: Path, io_rng: np.random.Generator, kind: str) -> None:
    path = tmp_path / f"bomb.{kind}"
    if kind == "png":
        path.write_bytes(_png_header_only(60000, 60000))
    elif kind == "jpg":
        path.write_bytes(_patch_jpeg_size(_jpeg_bytes(io_rng), 60000, 60000))
    else:
        path.write_bytes(_tiff_header_only(60000, 60000))
    assert path.stat().st_size < 4096
    for fn in (probe_image, read_image):
        start = time.perf_counter()
        with pytest.raises(ImageReadError) as info:
            fn(path)
        assert time.perf_counter() - start < 1.0
        message = str(info.value)
        assert path.name in message
        assert "3,600,000,000" in message  # the pixel count
        assert "300,000,000" in message  # the limit
        assert "--max-pixels" in message


def test_max_pixels_is_ours_not_pillows(tmp_path: Path, io_rng: np.random.Generator) -> None:
    # 200 MP: above Pillow's own bomb limit (2 * 89 MP), below focusstack's default (300 MP).
    path = tmp_path / "large.jpg"
    path.write_bytes(_patch_jpeg_size(_jpeg_bytes(io_rng), 20000, 10000))
    info = probe_image(path)
    assert (info.width, info.height) == (20000, 10000)
    small = write_image(tmp_path / "small.png", _smooth(io_rng, 10, 10), bit_depth=8)
    with pytest.raises(ImageReadError, match="--max-pixels"):
        read_image(small, max_pixels=99)
    assert read_image(small, max_pixels=100).pixels.shape == (10, 10, 3)


# --------------------------------------------------------------------------------------------
# collecting and checking stacks


def test_natural_sort() -> None:
    assert [p.name for p in natural_sort(["f10.png", "f2.png", "F1.png"])] == ["F1.png", "f2.png", "f10.png"]
    assert [p.name for p in natural_sort(["img_100.tif", "IMG_9.tif", "img_10.tif"])] == [
        "IMG_9.tif", "img_10.tif", "img_100.tif",
    ]


def _make_folder(folder: Path, rng: np.random.Generator, names: list[str], size: tuple[int, int] = (8, 6)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        u8 = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        out.append(_write_png(folder / name, u8))
    return out


def test_collect_folder(tmp_path: Path, io_rng: np.random.Generator) -> None:
    _make_folder(tmp_path / "s", io_rng, ["f10.png", "f2.png", "F1.PNG", ".hidden.png"])
    (tmp_path / "s" / "notes.txt").write_text("x")
    (tmp_path / "s" / "sub").mkdir()
    _make_folder(tmp_path / "s" / "sub", io_rng, ["f0.png"])
    frames = collect_stack([tmp_path / "s"])
    assert [p.name for p in frames] == ["F1.PNG", "f2.png", "f10.png"]
    assert all(p.parent == tmp_path / "s" for p in frames)


def test_collect_explicit_files(tmp_path: Path, io_rng: np.random.Generator) -> None:
    a, b = _make_folder(tmp_path, io_rng, ["b10.jpg", "b9.tif"])
    assert collect_stack([a, b]) == [b, a]
    with pytest.raises(UsageError, match="twice"):
        collect_stack([a, tmp_path / "." / a.name])


def test_collect_errors(tmp_path: Path, io_rng: np.random.Generator) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as info:
        collect_stack([tmp_path / "empty"])
    assert "empty" in str(info.value) and ".tif" in str(info.value)

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    with pytest.raises(UsageError, match="readme.txt"):
        collect_stack([tmp_path / "docs"])

    with pytest.raises(UsageError, match="nope.png"):
        collect_stack([tmp_path / "nope.png"])

    odd = tmp_path / "frame.bmp"
    odd.write_bytes(b"BM")
    with pytest.raises(UsageError) as info:
        collect_stack([odd])
    assert "frame.bmp" in str(info.value) and ".png" in str(info.value) and ".dng" in str(info.value)

    (png,) = _make_folder(tmp_path / "x", io_rng, ["a.png"])
    with pytest.raises(UsageError, match="folder"):
        collect_stack([tmp_path / "x", png])
    with pytest.raises(UsageError):
        collect_stack([])


def test_check_stack(tmp_path: Path, io_rng: np.random.Generator) -> None:
    frames = _make_folder(tmp_path, io_rng, ["a1.png", "a2.png", "a3.png"])
    infos = check_stack(frames)
    assert [i.path for i in infos] == frames and all(isinstance(i, ImageInfo) for i in infos)

    with pytest.raises(StackError) as info:
        check_stack(frames[:1])
    assert "2 to 7" in str(info.value)

    many = _make_folder(tmp_path / "many", io_rng, [f"m{i}.png" for i in range(8)])
    with pytest.raises(StackError) as info:
        check_stack(many)
    assert "frame limit" in str(info.value) and "split" in str(info.value) and "at most 7" in str(info.value)
    assert len(check_stack(many, max_frames=8)) == 8


def test_check_stack_mismatched_sizes(tmp_path: Path, io_rng: np.random.Generator) -> None:
    frames = _make_folder(tmp_path, io_rng, ["a1.png", "a2.png"], size=(8, 6))
    frames += _make_folder(tmp_path, io_rng, ["a3.png"], size=(9, 6))
    with pytest.raises(StackError) as info:
        check_stack(frames)
    message = str(info.value)
    assert "a3.png" in message and "9x6" in message  # the odd file and its size
    assert "a1.png" in message and "8x6" in message  # the reference file and its size


def test_check_real_stacks() -> None:
    frames = collect_stack([_need(PCB7)])
    assert len(frames) == 7
    infos = check_stack(frames)
    assert {(i.width, i.height) for i in infos} == {(2048, 1536)}
    if PCB10.exists():
        with pytest.raises(StackError, match="frame limit"):
            check_stack(collect_stack([PCB10]))  # the default limit; `fuse` passes a larger one


# --------------------------------------------------------------------------------------------
# output policy


def test_output_bit_depth() -> None:
    assert output_bit_depth("o.tif", [8, 8]) == 8
    assert output_bit_depth("o.TIFF", [8, 16]) == 16
    assert output_bit_depth("o.tif", [32, 8]) == 16
    assert output_bit_depth("o.png", [16, 16]) == 16
    assert output_bit_depth("o.png", [8]) == 8
    assert output_bit_depth("o.jpg", [16, 16]) == 8
    assert output_bit_depth("o.jpeg", [8]) == 8
    with pytest.raises(UsageError) as info:
        output_bit_depth("o.webp", [8])
    assert ".tif" in str(info.value) and ".png" in str(info.value) and ".jpg" in str(info.value)


def test_write_rejects_bad_arguments(tmp_path: Path) -> None:
    good = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(UsageError):
        write_image(tmp_path / "o.bmp", good, bit_depth=8)
    with pytest.raises(UsageError):
        write_image(tmp_path / "o.jpg", good, bit_depth=16)
    with pytest.raises(UsageError):
        write_image(tmp_path / "o.png", good, bit_depth=12)
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "o.png", np.zeros((4, 4), np.float32), bit_depth=8)
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "o.png", np.zeros((4, 4, 3), np.uint8), bit_depth=8)
    bad = good.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ImageWriteError, match="NaN"):
        write_image(tmp_path / "o.png", bad, bit_depth=8)
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "no" / "o.png", good, bit_depth=8)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# atomic output


def _half_then_raise(exc: BaseException):
    def encoder(fh, data: np.ndarray, exif: bytes | None, icc: bytes | None) -> None:  # noqa: ANN001
        fh.write(PNG_SIGNATURE + b"\x00" * 4096)  # half a file, then the failure
        raise exc

    return encoder


@pytest.mark.parametrize("exc", [RuntimeError("encoder exploded"), KeyboardInterrupt()])
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    monkeypatch.setitem(io_writers._ENCODERS, "png", _half_then_raise(exc))
    with pytest.raises(type(exc)):
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32), bit_depth=8)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"old contents")
    monkeypatch.setitem(io_writers._ENCODERS, "png", _half_then_raise(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_image(out, np.zeros((4, 4, 3), np.float32), bit_depth=8, overwrite=True)
    assert out.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["out.png"]


def test_existing_output(tmp_path: Path, io_rng: np.random.Generator) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    pixels = _smooth(io_rng, 8, 8)
    with pytest.raises(OutputExistsError) as info:
        write_image(out, pixels, bit_depth=8)
    assert "out.png" in str(info.value) and "--overwrite" in str(info.value)
    assert out.read_bytes() == b"keep me"
    write_image(out, pixels, bit_depth=8, overwrite=True)
    assert read_image(out).pixels.shape == (8, 8, 3)
    assert os.listdir(tmp_path) == ["out.png"]


def test_output_equal_to_input(tmp_path: Path, io_rng: np.random.Generator) -> None:
    (frame,) = _make_folder(tmp_path / "in", io_rng, ["a.png"])
    before = frame.read_bytes()
    pixels = _smooth(io_rng, 6, 8)
    for target in (frame, tmp_path / "in" / ".." / "in" / "a.png"):
        with pytest.raises(OutputExistsError, match="input"):
            write_image(target, pixels, bit_depth=8, overwrite=True, protected=[frame])
    link = tmp_path / "link.png"
    link.symlink_to(frame)
    with pytest.raises(OutputExistsError):
        write_image(link, pixels, bit_depth=8, overwrite=True, protected=[frame])
    assert frame.read_bytes() == before


def test_unwritable_folder_chmod(tmp_path: Path) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: permissions are not enforced (see the monkeypatched tests)")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError) as info:
            write_image(folder / "o.png", np.zeros((4, 4, 3), np.float32), bit_depth=8)
        assert str(folder) in str(info.value)
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith(".part"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    with pytest.raises(ImageWriteError) as info:
        write_image(tmp_path / "o.png", np.zeros((4, 4, 3), np.float32), bit_depth=8)
    assert str(tmp_path) in str(info.value) and "writable" in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_rename_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_replace(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "replace", fake_replace)
    with pytest.raises(ImageWriteError) as info:
        write_image(tmp_path / "o.tif", np.zeros((4, 4, 3), np.float32), bit_depth=16)
    assert str(tmp_path) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o.png"
    out.write_bytes(b"previous")

    def fake_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fake_fsync)
    with pytest.raises(ImageWriteError) as info:
        write_image(out, np.zeros((4, 4, 3), np.float32), bit_depth=16, overwrite=True)
    assert "free space" in str(info.value) and "o.png" in str(info.value)
    assert out.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["o.png"]


def test_atomic_output_for_other_writers(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".part")
        tmp.write_text('{"ok": true}')
        assert not target.exists()
    assert target.read_text() == '{"ok": true}'
    with pytest.raises(ValueError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise ValueError("boom")
    assert target.read_text() == '{"ok": true}'
    assert os.listdir(tmp_path) == ["report.json"]
    with pytest.raises(OutputExistsError):
        with atomic_output(target):
            pass


# --------------------------------------------------------------------------------------------
# fuzz: damaged files only ever give ImageReadError


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    seeds = {}
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    seeds["png8"] = buf.getvalue()
    buf = io.BytesIO()
    encode_png16(buf, u8.astype(np.uint16) * 257, icc=b"fake icc", exif=b"Exif\x00\x00MM\x00*")
    seeds["png16"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=80)
    seeds["jpeg"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, u8.astype(np.uint16) * 257, photometric="rgb", compression="zlib")
    seeds["tiff16z"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, u8[..., 0])
    seeds["tiff8"] = buf.getvalue()
    return seeds


_SEEDS = _seed_files()


@st.composite
def _damaged_files(draw: st.DrawFn) -> tuple[str, bytes]:
    ext = draw(st.sampled_from([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dng"]))
    how = draw(st.sampled_from(["random", "mutate", "truncate", "mutate+truncate"]))
    if how == "random":
        return ext, draw(st.binary(min_size=0, max_size=600))
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))])
    if "mutate" in how:
        for _ in range(draw(st.integers(1, 6))):
            limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 200)  # headers often
            data[draw(st.integers(0, limit))] = draw(st.integers(0, 255))
    if "truncate" in how:
        data = data[: draw(st.integers(0, len(data)))]
    return ext, bytes(data)


@pytest.fixture(scope="module")
def io_fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("io_fuzz")


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_damaged_files())
def test_fuzz_only_image_read_errors(io_fuzz_dir: Path, case: tuple[str, bytes]) -> None:
    ext, data = case
    path = io_fuzz_dir / f"fuzz{ext}"
    path.write_bytes(data)
    for fn in (probe_image, read_image):
        try:
            result = fn(path, max_pixels=1 << 16)
        except ImageReadError as exc:
            assert path.name in str(exc)
        else:
            if isinstance(result, Frame):
                px = result.pixels
                assert px.dtype == np.float32 and px.ndim == 3 and px.shape[2] == 3
                assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0


def test_tiff_output_carries_exposure_and_lens_as_xmp(tmp_path):
    """TIFF output cannot hold the EXIF block; the first frame's exposure and lens tags (issue
    18: "at least Make, Model, DateTime, lens and exposure tags") go into an XMP packet."""
    import xml.etree.ElementTree as ET

    import tifffile
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    from focusstack.io import write_image

    exif = Image.Exif()
    exif[271], exif[272] = "Canon", "EOS R5"
    sub = exif.get_ifd(0x8769)
    sub[33434], sub[33437], sub[34855] = IFDRational(1, 125), IFDRational(28, 10), 400
    sub[37386], sub[42036] = IFDRational(100, 1), "RF100mm F2.8 L MACRO <macro>"
    write_image(tmp_path / "o.tif", np.zeros((8, 8, 3), np.float32), bit_depth=16, exif=exif.tobytes())
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        tags = tif.pages[0].tags
        assert (tags["Make"].value, tags["Model"].value, tags["Orientation"].value) == ("Canon", "EOS R5", 1)
        packet = bytes(tags[700].value).decode("utf-8")
    root = ET.fromstring(packet[packet.index("<x:xmpmeta"): packet.index("</x:xmpmeta>") + len("</x:xmpmeta>")])
    found = {el.tag.split("}")[1]: (el.text or "".join(el.itertext())) for el in root.iter() if "}" in el.tag}
    assert found["ExposureTime"] == "1/125" and found["FNumber"] == "14/5" and found["FocalLength"] == "100/1"
    assert found["LensModel"] == "RF100mm F2.8 L MACRO <macro>" and found["li"] == "400"
    # no exposure tags, no packet
    write_image(tmp_path / "p.tif", np.zeros((8, 8, 3), np.float32), bit_depth=16, exif=Image.Exif().tobytes())
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert 700 not in tif.pages[0].tags


def test_raw_frames_carry_their_basic_exif():
    """EXIF of RAW inputs was never carried (issue 18): a TIFF-based RAW's Make, Model and
    DateTime now reach the frame (and so the output)."""
    from PIL import Image

    from conftest import shared_path
    from focusstack.io import read_image

    frame = read_image(shared_path("data", "raw", "Nikon_uncompressed.nef"))
    exif = Image.Exif()
    exif.load(frame.exif)
    assert (exif.get(271), exif.get(272)) == ("Nikon", "Nikon COOLSCAN IV ED")
    assert exif.get(274) in (None, 1)  # LibRaw turned the pixels; nothing to turn again


def test_the_one_png_encoder_writes_grey_alpha_and_16_bit_that_decode_exactly(tmp_path):
    """focusstack.io.png16 serves the renderer too (png_bytes: grey masks, 8-bit mattes, 16-bit
    frames); Pillow decodes every layout back to the same samples."""
    from PIL import Image

    from focusstack.io.png16 import png_bytes

    rng = np.random.default_rng(11)
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    rgba = (rng.random((20, 30, 4)) * 255).astype(np.uint8)
    rgb16 = (rng.random((300, 41, 3)) * 65535).astype(np.uint16)  # more rows than one block
    for name, arr in (("g", grey), ("a", rgba)):
        (tmp_path / f"{name}.png").write_bytes(png_bytes(arr))
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{name}.png")), arr)
    (tmp_path / "c.png").write_bytes(png_bytes(rgb16, level=0))
    back = read_image(tmp_path / "c.png")
    assert back.bit_depth == 16
    np.testing.assert_array_equal(np.round(back.pixels * 65535).astype(np.uint16), rgb16)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lzw_tiff_is_read_without_imagecodecs(tmp_path, dtype):
    """LZW (OpenCV's default TIFF compression, common from editors) needs the optional
    imagecodecs package in tifffile; the reader decodes it through OpenCV instead, with the
    same samples and bit depth, RGB order."""
    import cv2

    rng = np.random.default_rng(7)
    scale = np.iinfo(dtype).max
    bgr = (rng.random((29, 41, 3)) * scale).astype(dtype)
    path = tmp_path / "lzw.tif"
    assert cv2.imwrite(str(path), bgr)
    assert int(tifffile.TiffFile(path).pages[0].compression) == 5  # LZW
    frame = read_image(path)
    assert frame.bit_depth == (16 if dtype == np.uint16 else 8)
    assert np.array_equal(frame.pixels, (bgr[..., ::-1].astype(np.float32) / np.float32(scale)))
