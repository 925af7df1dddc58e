"""Occluder cut-outs for the FSB's training renders (focusstack.rendering.occluders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from focusstack.errors import UsageError
from focusstack.rendering import RenderConfig, render_dataset
from focusstack.rendering.occluders import bars_matte, blob_matte, edge_matte, make_occluders
from focusstack.rendering.sources import discover_backgrounds, split_sources

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
BACKGROUNDS = DATA / "backgrounds"
needs_data = pytest.mark.skipif(not BACKGROUNDS.is_dir(), reason="../shared/data/backgrounds is absent")


@pytest.mark.parametrize("fn", [edge_matte, bars_matte, blob_matte])
def test_mattes_are_soft_binary_and_split_the_cutout(fn):
    for seed in range(6):
        m = fn(np.random.default_rng(seed), 96)
        assert m.shape == (96, 96) and m.dtype == np.float32
        assert m.min() >= 0 and m.max() <= 1
        hard = (m < 0.02) | (m > 0.98)
        assert hard.mean() > 0.85  # antialiased edges only, no fog
        assert 0.01 < m.mean() < 0.99  # both foreground and background present


def test_bars_cross_the_whole_cutout():
    """A bar enters at one edge and leaves at the opposite one (railings, posts)."""
    for seed in range(8):
        m = bars_matte(np.random.default_rng(seed), 128) > 0.5
        rows, cols = m.any(axis=1), m.any(axis=0)
        assert (rows[0] and rows[-1]) or (cols[0] and cols[-1])


@needs_data
def test_make_occluders_writes_rgba_cutouts_with_a_clean_split(tmp_path):
    out = tmp_path / "occ"
    rec = make_occluders(out, BACKGROUNDS, 20, size=64, seed=3)
    files = sorted(out.glob("occluder_*.png"))
    assert len(files) == 20 and rec["count"] == 20
    im = Image.open(files[0])
    assert im.mode == "RGBA" and im.size == (64, 64)
    assert json.loads((out / "occluders.json").read_text()) == rec
    # validation occluders take their photos from the backgrounds' validation split only
    bg_train, bg_val = split_sources(discover_backgrounds(BACKGROUNDS), 0.1, "--backgrounds")
    val_ids, train_ids = {s.id for s in bg_val}, {s.id for s in bg_train}
    for o in rec["occluders"]:
        if o["texture"] != "flat":
            assert o["texture"] in (val_ids if o["split"] == "val" else train_ids)
        assert 0 < o["coverage"] < 1
    assert any(o["split"] == "val" for o in rec["occluders"])
    # same seed, same bytes; an existing set is never overwritten
    again = make_occluders(tmp_path / "occ2", BACKGROUNDS, 20, size=64, seed=3)
    assert again["occluders"] == rec["occluders"]
    assert (tmp_path / "occ2" / files[5].name).read_bytes() == files[5].read_bytes()
    with pytest.raises(UsageError, match="already holds occluders"):
        make_occluders(out, BACKGROUNDS, 20, size=64, seed=4)
    with pytest.raises(UsageError, match="count >= 2"):
        make_occluders(tmp_path / "x", BACKGROUNDS, 1, size=64)


@needs_data
def test_occluders_render_as_subjects_that_reach_the_frame_edge(tmp_path):
    occ = tmp_path / "occ"
    make_occluders(occ, BACKGROUNDS, 12, size=128, seed=1)
    cfg = RenderConfig(samples=4, resolution=64, seed=2, subjects=occ, backgrounds=BACKGROUNDS, frames_min=2,
                       frames_max=2, subject_scale_min=1.5, subject_scale_max=2.0, show_progress=False)
    render_dataset(tmp_path / "ds", cfg)
    touching = 0
    for d in sorted((tmp_path / "ds" / "samples").iterdir()):
        m = np.asarray(Image.open(d / "matte_00.png").convert("L")) > 127
        border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
        touching += int(border.any())
    assert touching >= 3  # large occluders cross the frame's edges, unlike compact subjects


@needs_data
def test_mixed_backgrounds_have_a_flat_part_and_a_clean_split(tmp_path):
    from focusstack.rendering.occluders import make_mixed_backgrounds

    out = tmp_path / "mix"
    rec = make_mixed_backgrounds(out, BACKGROUNDS, 20, size=96, seed=5)
    files = sorted(out.glob("mixed_*.png"))
    assert len(files) == 20 and json.loads((out / "mixed.json").read_text()) == rec
    # each image's split (render-dataset's rule, by its own name) matches its photo's split
    own_train, own_val = split_sources(discover_backgrounds(out), 0.1, "--backgrounds")
    bg_train, bg_val = split_sources(discover_backgrounds(BACKGROUNDS), 0.1, "--backgrounds")
    val_ids, train_ids = {s.id for s in bg_val}, {s.id for s in bg_train}
    own_val_ids = {s.id for s in own_val}
    assert own_val_ids and {r["file"] for r in rec["mixed"] if r["split"] == "val"} == own_val_ids
    for r in rec["mixed"]:
        assert r["photo"] in (val_ids if r["split"] == "val" else train_ids)
        assert 0 < r["flat_share"] < 1
    # the flat part is textureless: its local contrast is far below the photo part's
    flat_lap, photo_lap = [], []
    for r, f in zip(rec["mixed"], files):
        g = np.asarray(Image.open(f).convert("L"), np.float32)
        lap = np.abs(g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
        flat_lap.append(np.percentile(lap, 5 + 90 * (1 - r["flat_share"]) / 2))
        photo_lap.append(np.percentile(lap, 95))
    assert np.median(flat_lap) < 0.25 * np.median(photo_lap)
    with pytest.raises(UsageError, match="already holds mixed backgrounds"):
        make_mixed_backgrounds(out, BACKGROUNDS, 20, size=96, seed=6)
