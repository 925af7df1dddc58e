import numpy as np
import pytest

from focusstack.config import TileConfig
from focusstack.errors import ConfigError
from focusstack.tiling import (
    Tile,
    blend_tiles,
    canvas_tiles,
    downscale_weight,
    extract,
    mirror_index,
    plan_tiles,
    tile_mask,
    tile_origins,
    tile_weights,
    weight_sum,
)


@pytest.mark.parametrize("length,tile,stride", [(512, 512, 384), (1000, 512, 384), (1300, 256, 192), (100, 512, 384), (2048, 512, 384)])
def test_origins_cover_axis(length, tile, stride):
    o = tile_origins(length, tile, stride)
    covered = np.zeros(length, bool)
    for s in o:
        covered[s : s + tile] = True
    assert covered.all()
    assert o[0] == 0 and all(s + min(tile, length) <= length for s in o)


@pytest.mark.parametrize("h,w,tile", [(512, 512, 512), (700, 1111, 256), (1000, 1000, 512), (130, 97, 128), (2048, 1536, 512)])
def test_blend_weights_sum_to_one(h, w, tile):
    cfg = TileConfig(tile=tile)
    tiles = plan_tiles(h, w, cfg)
    m = cfg.margin
    norm = weight_sum(tiles, h, w, cfg)
    total = np.zeros((h + 2 * m, w + 2 * m))
    for t in tiles:
        ys, xs = slice(t.y + m, t.y + m + t.h), slice(t.x + m, t.x + m + t.w)
        total[ys, xs] += tile_mask(t, h, w, cfg) / norm[ys, xs]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert norm.min() > 0


def test_mask_is_a_gradient_in_the_overlap():
    cfg = TileConfig(tile=256)  # overlap 64 px, dead zone 16 px
    tiles = plan_tiles(1000, 1000, cfg)
    inner = [t for t in tiles if t.y > 0 and t.x > 0 and t.y + t.h < 1000 and t.x + t.w < 1000][0]
    mask = tile_mask(inner, 1000, 1000, cfg)
    row = mask[mask.shape[0] // 2]
    assert row[:16].max() < 0.02  # the dead zone at the patch edge
    assert row[len(row) // 2] == 1.0
    assert np.all(np.diff(row[16:64]) > 0)  # then a gradient
    edge = tiles[0]  # a patch on the canvas border has no ramp on that side
    assert tile_mask(edge, 1000, 1000, cfg)[0, 100] == 1.0


def test_blend_of_pointwise_process_is_exact():
    rng = np.random.default_rng(0)
    img = rng.random((300, 410, 3), dtype=np.float32)
    cfg = TileConfig(tile=128)
    out = blend_tiles(300, 410, cfg, lambda t: extract(img, t)[: t.h, : t.w] * 0.5 + 0.1)
    np.testing.assert_allclose(out, img * 0.5 + 0.1, atol=1e-6)


def test_small_image_is_one_padded_tile():
    tiles = plan_tiles(100, 70, TileConfig(tile=512))  # canvas 292 x 262 with the 96 px margin
    assert len(tiles) == 1
    t = tiles[0]
    assert (t.y, t.x, t.h, t.w, t.ph, t.pw) == (-96, -96, 292, 262, 320, 320)


def test_extract_mirrors_outside_the_image():
    img = np.arange(5 * 4).reshape(5, 4, 1).astype(np.float32)
    p = extract(img, Tile(-2, -1, 9, 6, 9, 6))
    assert p.shape == (9, 6, 1)
    assert p[2, 1, 0] == img[0, 0, 0]  # the image's corner
    assert p[1, 1, 0] == img[0, 0, 0] and p[0, 1, 0] == img[1, 0, 0]  # mirrored rows
    assert p[2, 0, 0] == img[0, 0, 0]  # mirrored column
    assert p[8, 5, 0] == img[3, 3, 0]  # row 6 mirrors to 3, column 4 to 3


@pytest.mark.parametrize("bad", [0, 63, 100, -64])
def test_bad_tile_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="--tile"):
        TileConfig(tile=bad)


@pytest.mark.parametrize("h,w,tile", [(100, 70, 512), (700, 1111, 256), (2048, 1536, 512), (300, 300, 128)])
def test_canvas_tiles_cover_the_canvas_with_weights_summing_to_one(h, w, tile):
    cfg = TileConfig(tile=tile)
    ch, cw, tiles = canvas_tiles(h, w, cfg)
    assert ch % 64 == 0 and cw % 64 == 0 and ch >= h + 2 * cfg.margin and cw >= w + 2 * cfg.margin
    assert ch - (h + 2 * cfg.margin) < 64 and cw - (w + 2 * cfg.margin) < 64
    full = np.zeros((ch, cw))
    low = np.zeros((ch // 8, cw // 8))
    for t, wt in zip(tiles, tile_weights(tiles, ch, cw, cfg)):
        # every patch lies inside the canvas, on the 1/8 grid, at its full (network) size
        assert t.y >= 0 and t.x >= 0 and t.y + t.h <= ch and t.x + t.w <= cw
        assert t.y % 8 == 0 and t.x % 8 == 0 and (t.h, t.w) == (t.ph, t.pw)
        assert wt.shape == (t.h, t.w) and wt.dtype == np.float32
        full[t.y : t.y + t.h, t.x : t.x + t.w] += wt
        low[t.y // 8 : (t.y + t.h) // 8, t.x // 8 : (t.x + t.w) // 8] += downscale_weight(wt, 8)
    np.testing.assert_allclose(full, 1.0, atol=1e-6)
    np.testing.assert_allclose(low, 1.0, atol=1e-6)


def test_downscale_weight_is_a_block_mean():
    w = np.arange(16 * 24, dtype=np.float32).reshape(16, 24)
    d = downscale_weight(w, 8)
    assert d.shape == (2, 3)
    assert d[1, 2] == pytest.approx(w[8:, 16:].mean())
    with pytest.raises(ValueError, match="multiple of 8"):
        downscale_weight(np.ones((12, 16)), 8)


@pytest.mark.parametrize("bad", [{"margin": 12}, {"margin": -8}, {"margin": 512}])
def test_bad_margin_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="margin"):
        TileConfig(**bad)


def test_fusion_unet_in_latent_patches_matches_whole(vae):
    """Canvases larger than ``fusion_whole_max`` run the U-Net in overlapping latent patches
    (very large images); on a small canvas forced through that path the result stays close to
    the whole-canvas run, and the blend covers every latent pixel once."""
    from conftest import small_fusion

    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.engines.vaeedof import VAEEDOFEngine
    from focusstack.metrics import psnr

    rng = np.random.default_rng(5)
    base = rng.random((48, 40, 3), dtype=np.float32)
    frames = [np.kron(base, np.ones((8, 8, 1), np.float32)) * s for s in (1.0, 0.8)]  # 384 x 320
    backend = TorchBackend(vae, small_fusion(), device="cpu", precision="fp32")
    whole = VAEEDOFEngine(backend).fuse(frames)
    calls = []
    real = backend.fuse
    backend.fuse = lambda x: calls.append(x.shape) or real(x)
    tiled = VAEEDOFEngine(backend, fusion_whole_max=40, fusion_tile=64).fuse(frames)
    assert len(calls) > 1 and all(c[-2:] == (64, 64) for c in calls)  # really in latent patches
    assert psnr(tiled, whole) >= 30.0
