"""Long stacks keep a flat peak (issue 17): slab results wait for their merge on disk
(``focusstack.stack.slabs.SpillStore``), read back bit for bit, and the folder is removed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from test_align import synthetic_stack, write_stack
from focusstack.stack import fuse as stack_fuse
from focusstack.stack import slabs as longstack
from focusstack.jobs import fuse as fuse_job
from focusstack.config import AlignConfig, FuseConfig
from focusstack.stack.slabs import SlabReducer, SpillStore


def _weighted_merge(images, level):  # noqa: ANN001
    """Order-sensitive: a different grouping or order gives other numbers."""
    w = np.arange(1, len(images) + 1, dtype=np.float32)
    return sum(np.float32(k) * im for k, im in zip(w, images)) / np.float32(w.sum()) + np.float32(level * 1e-3)


@pytest.mark.parametrize("slabs,fan_in", [(2, 7), (7, 7), (8, 7), (34, 7), (9, 2)])
def test_spilled_results_merge_as_in_memory_and_nothing_waits_in_memory(tmp_path, slabs, fan_in):
    rng = np.random.default_rng(slabs)
    images = [rng.random((32, 48, 3), dtype=np.float32) for _ in range(slabs)]
    plain = SlabReducer(_weighted_merge, fan_in)
    for i, im in enumerate(images):
        plain.push(im, last=i + 1 == slabs)
    expected = plain.finish()

    with SpillStore(min_bytes=1, parent=str(tmp_path)) as store:
        r = SlabReducer(lambda ims, lv: waiting_on_disk(r) or _weighted_merge(ims, lv), fan_in, store=store)

        def waiting_on_disk(red):  # noqa: ANN001, ANN202
            for lv in red.levels:
                for t in lv:
                    assert isinstance(t, Path) and t.is_file(), "a waiting result is held in memory"

        for i, im in enumerate(images):
            r.push(im.copy(), last=i + 1 == slabs)
        got = r.finish()
        assert store.spilled >= 1 and list(store.folder.iterdir()) == []  # read back and removed
        folder = store.folder
    assert not folder.exists()
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert r.merges == plain.merges


def test_small_results_and_a_failing_folder_stay_in_memory(tmp_path, caplog):
    small = np.zeros((4, 4, 3), np.float32)
    assert SpillStore().put(small) is small  # under min_bytes
    store = SpillStore(min_bytes=1, parent=str(tmp_path / "missing"))
    big = np.ones((8, 8, 3), np.float32)
    with caplog.at_level(logging.WARNING, logger="focusstack"):
        assert store.put(big) is big and store.failed
    assert "TMPDIR" in caplog.text
    store.close()


def test_a_long_stack_writes_the_same_bytes_with_the_spill(tmp_path, monkeypatch):
    frames, _ = synthetic_stack(120, 160, 12, None, seed=21)
    folder = write_stack(tmp_path / "s", frames, bits=8)
    cfg = FuseConfig(engine="decision", show_progress=False, align=AlignConfig(enabled=False), slab_size=3)
    spill_dir = tmp_path / "tmp"
    spill_dir.mkdir()
    used = []

    class Recording(SpillStore):
        def __init__(self):  # noqa: ANN204
            super().__init__(min_bytes=1, parent=str(spill_dir))
            used.append(self)

    monkeypatch.setattr(stack_fuse, "SpillStore", Recording)
    res = fuse_job.fuse_stack([folder], tmp_path / "spilled.png", cfg)
    assert len(res.slabs) > 3 and used and used[0].spilled >= 2
    assert list(spill_dir.iterdir()) == []  # removed at the end

    monkeypatch.setattr(stack_fuse, "SpillStore", lambda: None)  # results wait in memory
    fuse_job.fuse_stack([folder], tmp_path / "held.png", cfg)
    assert (tmp_path / "spilled.png").read_bytes() == (tmp_path / "held.png").read_bytes()
    assert longstack.SpillStore is SpillStore
