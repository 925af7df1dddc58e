"""The background side of occlusion boundaries (focusstack.maps.halo): the near/far order by
un-compositing, and the synthesis that replaces the halo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from focusstack.maps.decision import DecisionConfig, decision_steps
from focusstack.maps.halo import halo_fill, order_pair
from focusstack.maps.reblur import pair_seams
from focusstack.ops import srgb_to_linear
from tests.test_reblur import _blur, _enc, _lin, layered_pair


def _inputs(frames, alpha):
    """The two frames' linear light, the frames themselves (the matte's guide), the regions (the
    true matte's sides) and the seam."""
    labels = np.where(alpha > 0.5, 0, 1).astype(np.uint8)
    seam = pair_seams(labels)[(0, 1)]
    return (tuple(srgb_to_linear(f) for f in frames), tuple(frames),
            (labels == 0, labels == 1), seam)


@pytest.mark.parametrize("r,seed", [(5.0, 0), (8.0, 1), (6.0, 2)])
def test_order_is_the_occluder_in_either_frame_order(r, seed):
    near, far, alpha, _ = layered_pair(r=r, seed=seed, fg_texture=0.05)
    for frames, matte, want in (((near, far), alpha, 0), ((far, near), 1 - alpha, 1)):
        lin, guide, regions, seam = _inputs(frames, matte)
        got, ratio, spill, _ = order_pair(lin, guide, regions, seam, r, margin=0.0, max_spill_ratio=0.98)
        assert got == want, (r, seed, ratio, spill)  # the sign of the evidence is right
        assert spill < 0.98  # and un-compositing removes a real spill


def test_no_fill_where_there_is_no_spill():
    """Blur pasted with a hard mask (MF-VOC's model): no blurred object spreads over the
    background, so there is nothing to un-composite."""
    near, _, alpha, gt = layered_pair(r=6.0, seed=3, fg_texture=0.05)
    a3 = alpha[..., None]
    # the far frame: the object blurred inside its own outline, the background sharp up to it
    sharp_bg_far = _enc(a3 * _blur(_lin(near), 6.0) + (1 - a3) * _lin(gt)).astype(np.float32)
    _, _, regions, seam = _inputs((near, sharp_bg_far), alpha)
    weight = np.ones(alpha.shape, np.float32)
    mask, values, got, ratio, spill = halo_fill((near, sharp_bg_far), regions, seam, 6.0, weight)
    assert mask is None and values is None
    assert got is None


@pytest.mark.parametrize("grid", [0, 80 * 80])
def test_fill_brings_the_background_side_closer_to_the_truth(grid):
    """At full size (``halo_pixels`` 0 leaves the 160 px pair on its own grid) and with the
    order test and smooth terms on an 80 px grid, the background formed at full size."""
    near, far, alpha, gt = layered_pair(r=7.0, seed=4, fg_texture=0.05)
    on = decision_steps([near, far], DecisionConfig(halo_pixels=grid))
    off = decision_steps([near, far], DecisionConfig(halo=False))
    filled = [h for h in on.params["halo_pairs"] if h["filled_px"] > 0]
    assert filled and filled[0]["near"] == 0
    if grid:
        assert filled[0]["radius_px"] < 7.0 * 0.6  # radii in px of the grid (half the size)
    dist = cv2.distanceTransform((alpha < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    side = (alpha < 0.5) & (dist <= 7)  # the background within the blur radius of the object
    err = lambda x: float(np.abs(x - gt)[side].mean())  # noqa: E731
    assert err(on.fused) < 0.8 * err(off.fused)
    # and nothing changes away from the boundary
    far_away = dist > 30
    assert np.array_equal(on.fused[far_away], off.fused[far_away])


def test_halo_config_is_checked():
    with pytest.raises(ValueError, match="halo_min_radius"):
        DecisionConfig(halo_min_radius=0.5)
    with pytest.raises(ValueError, match="halo_max_spill_ratio"):
        DecisionConfig(halo_max_spill_ratio=0.0)
    with pytest.raises(ValueError, match="halo_matte_erode"):
        DecisionConfig(halo_matte_erode=0.0)


def test_synthesis_stays_near_the_two_frames_where_the_model_does_not_hold(monkeypatch):
    """The near object 1.6x brighter in the near frame than the spill of the far frame says
    (a real lens, not the model): un-compositing over-subtracts and the background runs dark;
    every synthesised value stays within ``_RANGE_SLACK`` of the two frames' range at its pixel."""
    import focusstack.maps.halo as halo

    near, far, alpha, _ = layered_pair(r=7.0, seed=5, fg_texture=0.05)
    near = np.where(alpha[..., None] > 0.5, np.clip(near * 1.6, 0, 1), near).astype(np.float32)
    _, _, regions, seam = _inputs((near, far), alpha)
    weight = np.ones(alpha.shape, np.float32)

    def worst(slack):
        monkeypatch.setattr(halo, "_RANGE_SLACK", slack)
        # (the gates off: the spill ratio of this pair is 2.3, the default gate would refuse it)
        mask, values, got, _, _ = halo.halo_fill((near, far), regions, seam, 7.0, weight, margin=0.0, max_spill_ratio=5.0)
        assert mask is not None and got == 0
        return float((np.minimum(near[mask], far[mask]) - values).max())

    assert worst(9.0) > 0.2  # unbounded, the background runs dark
    assert worst(0.1) <= 0.1 + 1e-6


def _matte_case(r, seed, fg_texture, grow):
    """A layered pair whose near region overshoots the object by ``grow`` px (as the re-blur
    test leaves it: the near frame wins the halo): the counts of the near hypothesis' matte and
    of its refinement."""
    from focusstack.maps import halo

    near, far, alpha, _ = layered_pair(r=r, seed=seed, fg_texture=fg_texture)
    region = alpha > 0.5
    if grow:
        region = cv2.dilate(region.astype(np.uint8), halo._ellipse(grow)) > 0
    lin, _, _, seam = _inputs((near, far), np.where(region, 1.0, 0.0))
    near_seam = cv2.dilate(seam.astype(np.uint8), halo._ellipse(int(np.ceil(2 * r)) + 2)) > 0
    side = halo._side(lin[0], lin[1], near, region, near_seam, r, halo._disc(halo.pillbox_radius(r)), halo.MatteSpec())
    refined = halo._refine_matte(side, lin[0], lin[1], near, region, r, halo.MatteSpec())
    fg = alpha > 0.5
    count = lambda m: (int(((m > 0.5) & ~fg).sum()), int(((m <= 0.5) & fg).sum()))  # noqa: E731
    return count(side.matte), count(refined)


@pytest.mark.parametrize("r,seed,grow", [(6.0, 0, 5), (8.0, 1, 6)])
def test_refined_matte_pulls_an_overshooting_region_back_to_the_silhouette(r, seed, grow):
    """(false object px, false background px) of the matte: the overshoot goes, and the
    refinement does not eat into the object."""
    (fg0, bg0), (fg1, bg1) = _matte_case(r, seed, 0.05, grow)
    assert fg0 > 500  # the matte of the eroded region overshoots
    assert fg1 < 0.2 * fg0
    assert bg1 <= bg0 + 0.02 * fg0


def test_refined_matte_leaves_a_textured_object_whole():
    """Sharp texture on the object side: a blurred background has none, so no pixel of it
    moves to the background."""
    (_, bg0), (_, bg1) = _matte_case(6.0, 2, 0.3, 0)
    assert bg1 <= bg0


def test_object_rim_given_to_the_far_frame_takes_the_near_frame():
    """The decision gave the far frame a 1 px rim inside the object (there it shows the object
    blurred with the background's texture seen through it, which a focus measure rewards). With
    the order known, that rim takes the near frame where the refined matte covers it, and no
    background pixel does."""
    from focusstack.maps import halo

    near, far, alpha, gt = layered_pair(r=7.0, seed=6, fg_texture=0.05)
    region = cv2.erode((alpha > 0.5).astype(np.uint8), halo._ellipse(1)) > 0
    _, _, regions, seam = _inputs((near, far), np.where(region, 1.0, 0.0))
    mask, values, got, _, _ = halo_fill((near, far), regions, seam, 7.0, np.ones(alpha.shape, np.float32))
    assert got == 0
    out = np.where(region[..., None], near, far)
    out[mask] = values
    took_near = np.abs(out - near).sum(axis=2) == 0
    rim = (alpha > 0.5) & ~region
    assert (took_near & rim).sum() >= 0.5 * rim.sum()
    assert not (took_near & mask & (alpha < 0.5)).any()
    assert np.abs(out - gt)[rim].mean() < 0.5 * np.abs(far - gt)[rim].mean()


def test_object_side_keeps_a_gap_that_the_matte_closes_over():
    """A matte that covers both a 2 px rim of the object and a slit through it (thin hair's gaps,
    which a guided filter closes over), both labelled far: only the rim, whose colour in the
    near frame is the object's, goes to the near frame; the slit shows the background there."""
    from focusstack.maps import halo

    rng = np.random.default_rng(10)
    size, r = 120, 6.0
    obj = np.zeros((size, size), bool)
    obj[30:90, 30:90] = True
    slit = np.zeros_like(obj)
    slit[40:80, 58:62] = True
    obj &= ~slit
    near_guide = np.where(obj[..., None], 0.2, 0.7).astype(np.float32).repeat(3, axis=2)  # dark object, bright background
    near_guide += 0.01 * rng.standard_normal(near_guide.shape).astype(np.float32)
    square = np.zeros_like(obj)
    square[30:90, 30:90] = True
    rim = square & ~(cv2.erode(square.astype(np.uint8), halo._ellipse(2)) > 0)  # the outer 2 px
    near_region = obj & ~rim  # the decision gave the far frame the rim and the slit
    matte = np.zeros((size, size), np.float32)
    matte[30:90, 30:90] = 1.0  # closed over the slit
    got = halo._object_side(matte, np.ones_like(obj), near_region, ~near_region, near_guide, r)
    assert got[rim].mean() > 0.9
    assert not got[slit].any()
