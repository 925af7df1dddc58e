"""focusstack.ops: the shared array operations (one shape check, one luminance, the filters)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from focusstack.ops import (
    LUMA_WEIGHTS,
    GuidedFilter,
    check_frames,
    check_shape,
    gaussian,
    linear_luminance,
    linear_to_srgb,
    luminance,
    srgb_to_linear,
)


def test_check_shape_names_the_expected_and_the_actual_shape():
    a = np.zeros((4, 5, 3), np.float32)
    assert check_shape(a, "H W 3") is not None
    assert check_shape(np.zeros((2, 4, 5)), "* H W").shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\), got shape \(4, 5\)"):
        check_shape(np.zeros((4, 5)), "H W 3", "image")
    with pytest.raises(ValueError, match=r"\(K, H, H\)"):
        check_shape(np.zeros((2, 4, 5)), "K H H")  # the same letter: the same size
    with pytest.raises(ValueError, match="got shape"):
        check_shape(a, "H W 4")


def test_check_frames_scales_integers_and_refuses_mixed_sizes():
    u16 = np.full((3, 4, 3), 65535, np.uint16)
    out = check_frames([u16, np.zeros((3, 4, 3), np.uint8)])
    assert out[0].dtype == np.float32 and out[0].max() == 1.0 and out[1].max() == 0.0
    with pytest.raises(ValueError, match="share one shape"):
        check_frames([u16, np.zeros((3, 5, 3), np.uint16)])
    with pytest.raises(ValueError, match="at most 1 frames"):
        check_frames([u16, u16], max_frames=1)


def test_luminance_is_rec709_and_the_srgb_curve_round_trips():
    rng = np.random.default_rng(0)
    img = rng.random((8, 9, 3), dtype=np.float32)
    np.testing.assert_allclose(luminance(img), img @ np.array(LUMA_WEIGHTS, np.float32), atol=1e-6)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=2e-6)
    np.testing.assert_allclose(linear_luminance(x[None]), srgb_to_linear(x)[None], atol=2e-5)


def test_gaussian_truncation_sets_the_kernel_radius():
    x = np.zeros((41, 41), np.float32)
    x[20, 20] = 1.0
    g4 = gaussian(x, 2.0, truncate=4.0)  # radius ceil(8) = 8: nothing beyond 8 px
    assert g4[20, 29] == 0.0 and g4[20, 28] > 0.0
    np.testing.assert_array_equal(gaussian(x, 2.0), cv2.GaussianBlur(x, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101))
    assert np.shares_memory(gaussian(x, 0.0, truncate=4.0), x) is False


def test_compose_copies_hard_pixels_and_sums_soft_ones_exactly():
    """Against the plain per-pixel sum in float32, frame by frame: bit for bit, across row boxes."""
    from focusstack.ops import compose

    rng = np.random.default_rng(7)
    k, h, w = 4, 150, 97  # more rows than one box of the soft sum
    frames = [rng.random((h, w, 3), dtype=np.float32) for _ in range(k)]
    labels = rng.integers(0, k, (h, w))
    weights = np.stack([(labels == i).astype(np.float32) for i in range(k)])
    soft = rng.random((h, w)) < 0.2
    r = rng.random((k, h, w)).astype(np.float32)
    r /= r.sum(axis=0)
    weights[:, soft] = r[:, soft]
    ref = np.zeros((h, w, 3), np.float32)
    for f, m in zip(frames, weights):
        ref += f * m[..., None]
    out = compose(frames, weights)
    np.testing.assert_array_equal(out[soft], np.clip(ref, 0, 1)[soft])
    hard = ~soft
    np.testing.assert_array_equal(out[hard], np.choose(labels[hard][:, None], [f[hard] for f in frames]))


def test_luminance_into_a_reused_buffer_is_the_same_plane():
    """``out=`` writes the same float32 luminance into the caller's buffer (reused from frame to
    frame) and refuses a buffer of the wrong shape, dtype or layout, naming what it needs."""
    rng = np.random.default_rng(11)
    a, b = (rng.random((37, 53, 3), dtype=np.float32) for _ in range(2))
    buf = np.full((37, 53), -1.0, np.float32)
    ya = luminance(a, out=buf)
    assert ya is buf and np.array_equal(buf, luminance(a))
    luminance(b, out=buf)
    assert np.array_equal(buf, luminance(b))
    for bad in (np.empty((37, 52), np.float32), np.empty((37, 53), np.float64), np.empty((53, 37), np.float32).T):
        with pytest.raises(ValueError, match="C-contiguous float32"):
            luminance(a, out=bad)


def test_empty_plain_gives_a_writable_array_of_the_asked_shape_either_way():
    """Small arrays come from np.empty, large ones from an anonymous map (plain pages); both are
    writable, C-contiguous, of the asked shape and dtype, and a large one's memory outlives the
    name it was made under as long as a view holds it."""
    from focusstack.ops.memory import PLAIN_FROM_BYTES, empty_plain

    small = empty_plain((4, 5, 3), np.float32)
    big = empty_plain((PLAIN_FROM_BYTES // 12 + 1, 1, 3), np.float32)
    assert small.base is None or small.flags.owndata
    assert not big.flags.owndata and big.base is not None  # the map, not numpy's allocator
    for a, dt in ((small, np.float32), (big, np.float32), (empty_plain((3_000_000,), np.uint16), np.uint16)):
        assert a.dtype == dt and a.flags.writeable and a.flags.c_contiguous
        a[...] = 1
        assert float(a.sum(dtype=np.float64)) == a.size
    view = big[::2]
    del big
    view[:] = 2.0
    assert np.all(view == 2.0)


@pytest.mark.parametrize("subsample", [1, 2])
def test_guided_filter_into_a_buffer_is_the_same_plane(subsample):
    """``GuidedFilter(...)(p, out=buf)`` gives the same float32 plane as without ``out``, for
    several planes through one buffer, and refuses a buffer of the wrong shape."""
    rng = np.random.default_rng(5)
    guide = rng.random((61, 47), dtype=np.float32)
    gf = GuidedFilter(guide, 4, 1e-3, subsample)
    buf = np.empty_like(guide)
    for _ in range(2):
        p = (rng.random((61, 47)) > 0.5).astype(np.float32)
        assert np.array_equal(gf(p, out=buf), gf(p))
    with pytest.raises(ValueError, match="float32 of shape"):
        gf(p, out=np.empty((61, 46), np.float32))


def test_color_guided_filter_is_the_per_pixel_least_squares_fit():
    """Against a direct solve of He et al.'s Eq. (14)/(15) at every pixel (np.linalg.solve on
    the window statistics), away from the border."""
    from focusstack.ops import box, color_guided_filter

    rng = np.random.default_rng(11)
    guide = rng.random((40, 36, 3), dtype=np.float32)
    p = rng.random((40, 36), dtype=np.float32)
    r, eps = 3, 1e-2
    got = color_guided_filter(guide, p, r, eps)
    size = 2 * r + 1
    m = np.stack([box(guide[..., c].copy(), size) for c in range(3)], -1)
    mp = box(p, size)
    cov = np.stack([box(guide[..., c] * p, size) for c in range(3)], -1) - m * mp[..., None]
    sig = np.stack([np.stack([box(guide[..., a] * guide[..., b], size) for b in range(3)], -1) for a in range(3)], -2)
    sig = sig - m[..., :, None] * m[..., None, :] + eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sig.astype(np.float64), cov[..., None].astype(np.float64))[..., 0]
    b = mp - (a * m).sum(-1)
    want = (np.stack([box(a[..., c].astype(np.float32), size) for c in range(3)], -1) * guide).sum(-1) + box(b.astype(np.float32), size)
    inner = np.s_[r + 1:-r - 1, r + 1:-r - 1]
    np.testing.assert_allclose(got[inner], want[inner], atol=2e-3)
    with pytest.raises(ValueError, match="must be"):
        color_guided_filter(guide[..., 0], p, r, eps)


def test_color_guide_follows_an_edge_that_luminance_cannot_see():
    """Red beside a green of the same Rec. 709 luminance, and a mask that reaches 4 px past the
    edge: the colour guide puts a step at the colour edge (its 0.5 contour moves there), the
    grey guide, blind to it, only blurs the mask where it was."""
    from focusstack.ops import color_guided_filter, guided_filter, luminance

    h, w = 32, 64
    guide = np.zeros((h, w, 3), np.float32)
    guide[:, : w // 2] = (0.8, 0.0, 0.0)
    guide[:, w // 2:] = (0.0, 0.8 * 0.2126 / 0.7152, 0.0)
    assert np.ptp(luminance(guide)) < 1e-3
    p = np.zeros((h, w), np.float32)
    p[:, : w // 2 + 4] = 1.0  # the mask reaches 4 px past the edge
    colour = color_guided_filter(guide, p, 8, 1e-3)
    grey = guided_filter(luminance(guide), p, 8, 1e-3)
    row = h // 2
    e = w // 2
    assert colour[row, e - 1] - colour[row, e] > 0.4 and grey[row, e - 1] - grey[row, e] < 0.1
    assert colour[row, :e].min() > 0.99  # the red side is whole
    assert colour[row, e + 2] < 0.5 < grey[row, e + 3]  # the contour at the edge, not 4 px past it


def test_scratch_reuses_its_buffer_while_the_shape_and_dtype_stay():
    from focusstack.ops import Scratch

    s = Scratch()
    a = s.get((6, 7))
    assert s.get((6, 7)) is a and a.dtype == np.float32
    b = s.get((6, 8))
    assert b is not a and b.shape == (6, 8) and s.get((6, 8), np.uint8) is not b
    s.clear()
    assert s.get((6, 8), np.uint8) is not b
