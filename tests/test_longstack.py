"""Long stacks (focusstack.stack.order, focusstack.stack.slabs and the slab path of focusstack.stack.fuse): slab plans,
the hierarchical reducer, focus order from the frames, and more than 7 frames end to end with
every engine, never handing an engine more than a slab."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from focusstack.jobs import fuse as fuse_job
from focusstack.align import transform_corners
from focusstack.stack.analysis import analyse_stack, read_ahead
from focusstack.cli.app import app
from focusstack.config import AlignConfig, FuseConfig, TileConfig
from focusstack.engines.decision import DecisionEngine
from focusstack.errors import ConfigError
from focusstack.io import read_image
from focusstack.stack.order import focus_grid, focus_order, unimodality_violation
from focusstack.stack.slabs import SlabReducer, count_merges, plan_slabs
from focusstack.metrics import psnr

from test_align import breathing_transforms, memory_reader, synthetic_stack, write_stack

runner = CliRunner()


# ---- slab plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 8, 10, 13, 40, 200])
@pytest.mark.parametrize("size,overlap", [(7, 1), (7, 0), (7, 2), (3, 1), (2, 0)])
def test_slab_plan_covers_every_frame_with_the_overlap(n, size, overlap):
    slabs = plan_slabs(n, size, overlap)
    seen = sorted(set(i for s in slabs for i in s))
    assert seen == list(range(n))
    for s in slabs:
        assert s == list(range(s[0], s[-1] + 1))  # consecutive in focus order
        assert len(s) <= size and (len(s) >= 2 or n == 1 or size == 2)  # 2 by 2: an odd one out
    for a, b in zip(slabs, slabs[1:]):
        assert len(set(a) & set(b)) == overlap and a[0] < b[0]
    sizes = [len(s) for s in slabs]
    assert max(sizes) - min(sizes) <= 1
    if n <= size:
        assert slabs == [list(range(n))]


def test_slab_plan_rejects_bad_arguments():
    for args in ((0, 7, 1), (10, 1, 0), (10, 7, 6), (10, 7, -1)):
        with pytest.raises(ValueError):
            plan_slabs(*args)
    with pytest.raises(ConfigError):
        FuseConfig(slab_size=7, slab_overlap=6)
    with pytest.raises(ConfigError):
        FuseConfig(slab_size=1)


# ---- the reducer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("slabs,fan_in", [(1, 7), (2, 7), (7, 7), (8, 7), (34, 7), (50, 3), (9, 2)])
def test_reducer_keeps_focus_order_and_bounds_what_waits(slabs, fan_in):
    calls = []
    most_waiting = 0

    def fuse(items, level):
        calls.append(len(items))
        assert 2 <= len(items) <= fan_in
        flat = [x for it in items for x in it]
        return flat

    r = SlabReducer(fuse, fan_in)
    for i in range(slabs):
        r.push([i])
        most_waiting = max(most_waiting, r.pending())
    out = r.finish()
    assert out == list(range(slabs))  # every slab once, in order
    assert r.merges == len(calls) == count_merges(slabs, fan_in)
    levels = int(np.ceil(np.log(max(slabs, 2)) / np.log(fan_in))) + 1
    assert most_waiting <= (fan_in - 1) * levels


# ---- focus order ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_stack():
    """12 defocused frames of one scene, focus stepping through 12 depth bands, unwarped."""
    frames, gt = synthetic_stack(120, 160, 12, None, seed=11)
    return frames, gt


def test_focus_order_is_found_from_shuffled_frames(long_stack):
    frames, _ = long_stack
    grids = [focus_grid(f.mean(2)) for f in frames]
    assert focus_order(grids).order == list(range(12)) and focus_order(grids).source == "name"
    perm = np.random.default_rng(2).permutation(12)
    fo = focus_order([grids[i] for i in perm])
    assert fo.source == "sharpness"
    found = [int(perm[i]) for i in fo.order]
    assert found in (list(range(12)), list(range(11, -1, -1)))
    x = np.stack([g.ravel() for g in grids])
    assert unimodality_violation(x, list(range(12))) < unimodality_violation(x, list(perm))


def test_flat_stacks_keep_the_name_order():
    rng = np.random.default_rng(0)
    flat = [np.full((60, 80), 0.5, np.float32) + rng.normal(0, 0.001, (60, 80)).astype(np.float32) for _ in range(9)]
    fo = focus_order([focus_grid(f) for f in flat])
    assert fo.order == list(range(9)) and fo.source == "name"


def test_shuffled_names_are_registered_along_the_focus_order():
    ts = breathing_transforms(8, 200, 150, seed=4)
    frames, _ = synthetic_stack(150, 200, 8, ts, seed=12)
    perm = [3, 0, 6, 1, 7, 2, 5, 4]  # name i holds focus position perm[i]
    read, paths = memory_reader([frames[p] for p in perm])
    a = analyse_stack(paths, read, AlignConfig(), need_order=True)
    assert [perm[i] for i in a.order.order] in (list(range(8)), list(range(7, -1, -1)))
    ref = perm[a.reference]  # the reference's focus position
    assert ref in (3, 4)  # the middle of the focus order
    for name_idx, pos in enumerate(perm):
        true = ts[ref] @ np.linalg.inv(ts[pos])  # frame pixels -> scene -> reference pixels
        err = np.abs(transform_corners(a.transforms[name_idx], 200, 150) - transform_corners(true, 200, 150)).max()
        assert err < 0.75, (name_idx, err)  # small frames, 4 links; the 0.5 px figure is test_align's


# ---- end to end ----------------------------------------------------------------------------------


class CountingEngine:
    """The decision engine, recording how many frames each call gets."""

    name = "decision"
    device = "cpu"
    precision = "fp32"

    def __init__(self):
        self.inner = DecisionEngine()
        self.calls: list[int] = []

    def fuse(self, frames, *, on_tile=None):
        self.calls.append(len(frames))
        return self.inner.fuse(frames, on_tile=on_tile)


def test_more_than_seven_frames_fuse_in_slabs(tmp_path, long_stack, monkeypatch):
    frames, gt = long_stack
    folder = write_stack(tmp_path / "s", frames)
    reads = []
    real = fuse_job.read_image
    monkeypatch.setattr(fuse_job, "read_image", lambda p, **kw: reads.append(Path(p).name) or real(p, **kw))
    engine = CountingEngine()
    cfg = FuseConfig(engine="decision", show_progress=False, align=AlignConfig(enabled=False))
    res = fuse_job.fuse_stack([folder], tmp_path / "o.tif", cfg, engine=engine)
    assert res.frames == 12 and max(engine.calls) <= 7
    assert res.slabs == [[f"f{i:02d}.tif" for i in s] for s in plan_slabs(12, 7, 1)]
    assert len(engine.calls) == len(res.slabs) + res.merges
    # pass 1 and pass 2 read each frame once; shared frames are not read again
    assert all(reads.count(f"f{i:02d}.tif") == 2 for i in range(12))
    fused = read_image(tmp_path / "o.tif").pixels
    single = DecisionEngine().fuse(frames)  # all 12 at once, for comparison
    assert psnr(fused, gt) > 30.0
    assert psnr(fused, gt) >= psnr(single, gt) - 1.0


def test_long_warped_stack_with_alignment(tmp_path):
    ts = breathing_transforms(9, 240, 180, seed=7)
    frames, gt = synthetic_stack(180, 240, 9, ts, seed=13)
    folder = write_stack(tmp_path / "s", frames)
    r = runner.invoke(app, ["fuse", str(folder), "-o", str(tmp_path / "o.tif"), "--engine", "decision", "--json", "-q"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["frames"] == 9 and len(d["slabs"]) == 2 and d["merges"] == 1
    assert d["alignment"]["reference"] == "f04.tif"
    assert d["focus_order"]["files"] == [f"f{i:02d}.tif" for i in range(9)] and d["focus_order"]["source"] == "name"
    c = d["alignment"]["crop"]
    fused = read_image(tmp_path / "o.tif").pixels
    assert psnr(fused, gt[c["y"] : c["y"] + c["height"], c["x"] : c["x"] + c["width"]]) > 30.0


def test_vaeedof_engine_takes_long_stacks_in_slabs(tmp_path, vae, one_torch_thread):
    from conftest import small_fusion
    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.engines.vaeedof import VAEEDOFEngine

    frames, _ = synthetic_stack(64, 96, 9, None, seed=14)
    folder = write_stack(tmp_path / "s", frames)
    engine = VAEEDOFEngine(TorchBackend(vae, small_fusion(), device="cpu", precision="fp32"), TileConfig(tile=128))
    calls = []
    inner = engine.fuse
    engine.fuse = lambda fr, on_tile=None: calls.append(len(fr)) or inner(fr, on_tile=on_tile)  # type: ignore[method-assign]
    res = fuse_job.fuse_stack([folder], tmp_path / "o.tif", FuseConfig(show_progress=False), engine=engine)
    assert res.frames == 9 and calls and max(calls) <= 7 and len(calls) == 3
    assert read_image(tmp_path / "o.tif").pixels.shape[2] == 3
    with pytest.raises(ConfigError):
        fuse_job.fuse_stack([folder], tmp_path / "x.tif", FuseConfig(show_progress=False, slab_size=8), engine=engine)


def test_cli_accepts_eight_frames(tmp_path, long_stack):
    folder = write_stack(tmp_path / "s", long_stack[0][:8], bits=8)
    r = runner.invoke(app, ["fuse", str(folder), "-o", str(tmp_path / "o.png"), "--engine", "decision", "-q", "--no-align"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o.png").is_file()


def test_a_slab_overlap_too_large_for_the_slab_size_says_how_to_fix_it():
    """--slab-size 2 leaves no room for the default overlap of 1: the fix names a value that works
    (it once said "pass --slab-overlap 1 (the default)", the value just refused)."""
    from focusstack.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        FuseConfig(slab_size=2)
    assert "--slab-overlap 0 with --slab-size 2" in e.value.fix and "at least 3" in e.value.fix
    FuseConfig(slab_size=2, slab_overlap=0)


def test_read_ahead_keeps_the_order_reads_one_frame_ahead_and_raises_in_place():
    """The analysis reads the next frame in a worker thread: the frames come in path order, no
    more than one is read beyond the one the caller holds, and a failed read raises when its
    frame is asked for (the frames before it are delivered)."""
    import threading

    paths = [Path(f"f{i}.tif") for i in range(5)]
    started: list[str] = []
    lock = threading.Lock()

    def read(p: Path) -> str:
        with lock:
            started.append(p.name)
        if p.name == "f3.tif":
            raise OSError("broken f3")
        return p.name

    got = []
    with pytest.raises(OSError, match="broken f3"):
        for name in read_ahead(read, paths):
            got.append(name)
            time.sleep(0.02)  # the worker has time to run ahead if it would
            assert len(started) <= len(got) + 1, (started, got)
    assert got == ["f0.tif", "f1.tif", "f2.tif"]
    assert "f4.tif" not in started
    assert list(read_ahead(lambda p: p.name, paths[:1])) == ["f0.tif"]
