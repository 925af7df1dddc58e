"""Time-bounded mutation fuzzing of the frame loaders: whatever the bytes, ``probe_image`` and
``read_image`` either return a valid frame or raise ``ImageReadError`` (the documented type).

The budget comes from FOCUSSTACK_FUZZ_SECONDS (``make test`` sets 130 s: the reliability issue
asks for at least 2 minutes in CI; 5 s when unset). Seeded, so a failure names a reproducible
case: the seed and iteration are in the assertion message.
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from focusstack.errors import ImageReadError
from focusstack.io import Frame, probe_image, read_image

from conftest import SHARED

BUDGET_S = float(os.environ.get("FOCUSSTACK_FUZZ_SECONDS", "5"))
MAX_PIXELS = 4_000_000  # keeps a mutated header from asking for gigabytes


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    img = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    out = {}
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG")):
        b = io.BytesIO()
        Image.fromarray(img).save(b, fmt)
        out[ext] = b.getvalue()
    b = io.BytesIO()
    Image.fromarray(img[..., 0]).save(b, "PNG")
    out[".gray.png"] = b.getvalue()
    for name, arr in (("", img), (".16", img.astype(np.uint16) * 257), (".f", img.astype(np.float32) / 255)):
        b = io.BytesIO()
        tifffile.imwrite(b, arr, photometric="rgb")
        out[f"{name}.tif"] = b.getvalue()
    dng = SHARED / "data" / "raw" / "Blackmagic.dng"
    if dng.is_file():
        out[".dng"] = dng.read_bytes()[:200_000]  # header and the start of the strips
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 5))
        if not b:
            break
        i = int(rng.integers(0, len(b)))
        if op == 0:  # flip bits
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:  # overwrite with an interesting value
            b[i : i + 4] = bytes(rng.choice([0, 0xFF, 0x7F, 0x80]) for _ in range(4))
        elif op == 2:  # truncate
            del b[i:]
        elif op == 3:  # insert junk
            b[i:i] = rng.bytes(int(rng.integers(1, 64)))
        else:  # duplicate a block
            j = int(rng.integers(i, min(len(b), i + 256) + 1))
            b[i:i] = b[i:j]
    return bytes(b)


@pytest.mark.slow
def test_loaders_raise_only_the_documented_error(tmp_path):
    seeds = _seeds()
    rng = np.random.default_rng(12345)
    deadline = time.monotonic() + BUDGET_S
    n, decoded = 0, 0
    names = sorted(seeds)
    while time.monotonic() < deadline:
        name = names[n % len(names)]
        ext = "." + name.rsplit(".", 1)[-1]
        path = tmp_path / f"case{ext}"
        path.write_bytes(_mutate(seeds[name], rng))
        try:
            probe_image(path, max_pixels=MAX_PIXELS)
            frame = read_image(path, max_pixels=MAX_PIXELS)
        except ImageReadError as exc:
            assert "case" in str(exc), f"iteration {n}: the message must name the file: {exc}"
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"iteration {n} ({name}): {type(exc).__name__}: {exc}")
        else:
            assert isinstance(frame, Frame) and frame.pixels.dtype == np.float32
            assert np.isfinite(frame.pixels).all() and frame.pixels.min() >= 0 and frame.pixels.max() <= 1
            decoded += 1
        n += 1
    assert n > 0
