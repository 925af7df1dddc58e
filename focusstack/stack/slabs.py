"""Long stacks: focus-ordered slabs and the hierarchical fusion of their results.

* :func:`plan_slabs`: consecutive runs of at most ``size`` frames in focus order, neighbouring
  runs sharing ``overlap`` frames, sizes balanced.
* :class:`SlabReducer`: fuses slab results as they arrive, ``fan_in`` at a time, into results
  of the next level (a tree), so that at most ``fan_in - 1`` results wait per level. With a
  :class:`SpillStore` the waiting results wait on disk, not in memory: the peak is that of
  fusing one slab, whatever the number of frames (issue 17: 40 frames of 1920x1080 held 6
  results, 150 MB, beside the slab being fused).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["SlabReducer", "SpillStore", "count_merges", "plan_slabs"]

log = logging.getLogger("focusstack")


def plan_slabs(n: int, size: int, overlap: int = 0) -> list[list[int]]:
    """Split positions ``0..n-1`` into consecutive slabs of at most ``size``.

    Consecutive slabs share ``overlap`` positions; slab sizes differ by at most one. ``n <= size``
    gives one slab.

    Raises:
        ValueError: ``n < 1``, ``size < 2`` or ``overlap`` not in ``[0, size - 2]`` (``0`` for
            ``size = 2``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if size < 2:
        raise ValueError(f"slab size must be >= 2, got {size}")
    if not 0 <= overlap <= max(0, size - 2):
        raise ValueError(f"overlap must be in [0, {max(0, size - 2)}], got {overlap}")
    if n <= size:
        return [list(range(n))]
    m = -(-(n - overlap) // (size - overlap))  # slabs needed
    total = n + (m - 1) * overlap
    base, extra = divmod(total, m)
    slabs, start = [], 0
    for i in range(m):
        length = base + (1 if i < extra else 0)
        slabs.append(list(range(start, start + length)))
        start += length - overlap
    assert slabs[-1][-1] == n - 1
    return slabs


class SpillStore:
    """Where slab results wait for their merge: ``.npy`` files in a private temporary folder
    (under ``$TMPDIR``, made on the first :meth:`put`, removed by :meth:`close`).

    ``np.save`` / ``np.load`` bring every value back bit for bit, so the fused output is the
    same as with the results held in memory; only arrays of at least ``min_bytes`` are spilled
    (the others stay as they are)."""

    def __init__(self, min_bytes: int = 1 << 20, parent: str | None = None) -> None:
        self.min_bytes = min_bytes
        self.parent = parent
        self.folder: Path | None = None
        self.spilled = 0
        self.failed = False
        self._n = 0

    def put(self, image: np.ndarray) -> object:
        """A token for ``image`` (a path once spilled; the array itself when small)."""
        if not isinstance(image, np.ndarray) or image.nbytes < self.min_bytes:
            return image
        try:
            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix="focusstack-slabs-", dir=self.parent))
            path = self.folder / f"{self._n}.npy"
            self._n += 1
            np.save(path, image, allow_pickle=False)
        except OSError as exc:  # a full or read-only temporary folder: the result waits in memory
            if not self.failed:
                log.warning("slab results wait in memory, not in %s (%s); fix: point $TMPDIR at a "
                            "folder with room for them", self.folder or tempfile.gettempdir(), exc)
            self.failed = True
            return image
        self.spilled += 1
        return path

    def get(self, token: object) -> np.ndarray:
        """The image of ``token`` (its file read back and removed)."""
        if not isinstance(token, Path):
            return token  # type: ignore[return-value]
        image = np.load(token, allow_pickle=False)
        token.unlink()
        return image

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> "SpillStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _InMemory:
    """The default store: results wait as they are."""

    @staticmethod
    def put(image):  # noqa: ANN001, ANN205
        return image

    @staticmethod
    def get(token):  # noqa: ANN001, ANN205
        return token


class SlabReducer:
    """Fuse slab results hierarchically as they arrive, in focus order.

    ``fuse(images, level)`` fuses a list of ``(H, W, 3)`` float32 images (at most ``fan_in``) into
    one; ``level`` is 1 for merges of slab results, 2 for merges of those, and so on. Results
    pushed with :meth:`push` wait per level; when a level holds ``fan_in`` of them they are fused
    at once into one result of the next level. :meth:`finish` fuses whatever is left, keeping
    the focus order (earlier levels cover the earlier frames). A result that has to wait waits
    in ``store`` (a :class:`SpillStore` keeps it on disk); one that completes its group goes to
    the merge directly.
    """

    def __init__(self, fuse: Callable[[list[np.ndarray], int], np.ndarray], fan_in: int,
                 store: SpillStore | None = None) -> None:
        if fan_in < 2:
            raise ValueError(f"fan_in must be >= 2, got {fan_in}")
        self._fuse = fuse
        self.fan_in = fan_in
        self.store = store if store is not None else _InMemory()
        self.levels: list[list[object]] = []
        self.merges = 0

    def push(self, image: np.ndarray, level: int = 0, *, last: bool = False) -> None:
        """Add a result; ``last``: no more will come (it waits in memory for :meth:`finish`)."""
        while len(self.levels) <= level:
            self.levels.append([])
        if len(self.levels[level]) + 1 < self.fan_in:
            self.levels[level].append(image if last else self.store.put(image))  # it waits
            return
        tokens, self.levels[level] = self.levels[level], []
        group = [self.store.get(t) for t in tokens] + [image]
        del image, tokens
        merged = self._merge(group, level + 1)
        del group
        self.push(merged, level + 1, last=last)

    def _merge(self, group: list[np.ndarray], level: int) -> np.ndarray:
        self.merges += 1
        return self._fuse(group, level)

    def pending(self) -> int:
        return sum(len(v) for v in self.levels)

    def finish(self) -> np.ndarray:
        """Fuse what waits, ``fan_in`` at a time, level by level, into one image."""
        rest: list[object] = [t for lv in reversed(self.levels) for t in lv]
        top = len(self.levels)
        self.levels = []
        if not rest:
            raise ValueError("no slab results to finish")
        while len(rest) > 1:
            groups = plan_slabs(len(rest), self.fan_in, 0)
            last = len(groups) == 1
            out: list[object] = []
            for g in groups:
                if len(g) == 1:
                    out.append(rest[g[0]])
                    continue
                images = [self.store.get(rest[i]) for i in g]
                merged = self._merge(images, top + 1)
                del images
                out.append(merged if last else self.store.put(merged))
                del merged
            rest = out
            top += 1
        return self.store.get(rest[0])


def count_merges(slabs: int, fan_in: int) -> int:
    """How many merges :class:`SlabReducer` makes for ``slabs`` slab results (for progress)."""
    r = SlabReducer(lambda imgs, level: imgs[0], fan_in)
    for _ in range(slabs):
        r.push(np.zeros(1))  # type: ignore[arg-type]
    r.finish()
    return r.merges
