"""Large arrays on plain (4 KiB) pages.

NumPy asks the kernel for transparent huge pages on every large allocation
(``madvise(MADV_HUGEPAGE)``). Where huge pages have to be assembled first, the first touch of a
fresh 134 MB frame (4096x2731x3 float32) measured 0.2-0.4 s on the 2-core development machine,
and 0.03 s on plain pages; how much depends on the kernel's supply of free huge pages, so the
same run took 0.6 to 2.7 s to read 7 such frames. A frame is written once and then streamed
(never gathered at random), so it gains nothing from huge pages. :func:`empty_plain` gives it
anonymous memory that is not advised for them, which the kernel maps with plain pages under the
usual ``madvise`` setting of ``/sys/kernel/mm/transparent_hugepage/enabled``.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["PLAIN_FROM_BYTES", "Scratch", "empty_plain"]

#: Arrays smaller than this come from ``np.empty`` (the allocator's pools serve them well).
PLAIN_FROM_BYTES = 8 << 20


def empty_plain(shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """An uninitialised, writable, C-contiguous array of ``shape`` and ``dtype``: from an anonymous
    memory map (plain pages; unmapped when the array and its views are gone) when it holds at
    least :data:`PLAIN_FROM_BYTES`, else ``np.empty``."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if n < PLAIN_FROM_BYTES:
        return np.empty(shape, dt)
    try:
        if hasattr(mmap, "MAP_ANONYMOUS"):  # POSIX
            buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        else:  # Windows: an anonymous map backed by the paging file
            buf = mmap.mmap(-1, n)
    except (OSError, ValueError):  # no map of that size: the allocator's memory, huge pages or not
        return np.empty(shape, dt)
    return np.frombuffer(buf, dt).reshape(shape)


class Scratch:
    """One reusable buffer: :meth:`get` returns the same array while the shape and dtype asked
    for stay the same (a caller that makes one full-size plane per frame and drops it faults in
    its pages once, not once per frame), and a new one when they change."""

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None

    def get(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` (the previous one when it fits)."""
        dt = np.dtype(dtype)
        if self._buf is None or self._buf.shape != tuple(shape) or self._buf.dtype != dt:
            self._buf = np.empty(shape, dt)
        return self._buf

    def clear(self) -> None:
        """Drop the buffer (its memory is freed once no caller holds it)."""
        self._buf = None
