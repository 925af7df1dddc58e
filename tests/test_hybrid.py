"""The hybrid engine: exact source pixels where confident, VAEEDOF only where needed, colour-matched."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from focusstack.engines.hybrid import HybridConfig, HybridEngine, agreement_map, boundary_band, colour_match


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.random((h, w, 3), dtype=np.float32)
    t = cv2.GaussianBlur(t, (0, 0), 0.8)
    # 16-bit values exactly: k / 65535
    return (np.round(t * 65535) / 65535).astype(np.float32)


def _blur(x: np.ndarray, s: float) -> np.ndarray:
    return (np.round(cv2.GaussianBlur(x, (0, 0), s) * 65535) / 65535).astype(np.float32)


def two_frames(h: int = 160, w: int = 192, seed: int = 0, ambiguous: tuple[slice, slice] | None = None):
    """Frame 0 sharp on the left half, frame 1 on the right. Optionally an ambiguous box where
    the frames disagree but neither is sharper: frame 1 shows the negative of frame 0's blurred
    content there (the same detail energy, a different picture), so the decision is a tie."""
    sharp = _texture(h, w, seed)
    soft = _blur(sharp, 3.0)
    f0, f1 = soft.copy(), soft.copy()
    f0[:, : w // 2] = sharp[:, : w // 2]
    f1[:, w // 2 :] = sharp[:, w // 2 :]
    if ambiguous is not None:
        soft2 = _blur(sharp, 1.5)
        f0[ambiguous] = soft2[ambiguous]
        f1[ambiguous] = 1.0 - soft2[ambiguous]
    return [f0, f1], sharp


class FakeVAEEDOF:
    """Stands in for VAEEDOFEngine: returns a fixed image (cropped like the frames) and records calls."""

    class backend:  # noqa: N801 - mimics the attribute
        frames = 7
        device = "cpu"
        precision = "fp32"

    def __init__(self, image: np.ndarray, reference: np.ndarray) -> None:
        self.image, self.reference, self.calls = image, reference, []

    def fuse(self, frames, *, on_tile=None, need=None):  # noqa: ANN001
        self.calls.append((frames[0].shape, None if need is None else need.copy()))
        h, w = frames[0].shape[:2]
        # the engine passes a crop of the frames: find where it lies in the full first frame
        score = cv2.matchTemplate(self.reference, np.ascontiguousarray(frames[0]), cv2.TM_SQDIFF)
        y, x = np.unravel_index(int(score.argmin()), score.shape)
        return self.image[y : y + h, x : x + w].astype(np.float32)


def test_confidence_one_means_exact_source_pixels_16bit():
    frames, _ = two_frames()
    steps = HybridEngine(None).steps(frames)
    conf = steps.confidence
    assert conf.dtype == np.float32 and conf.min() >= 0 and conf.max() <= 1
    sure = conf >= 1.0
    assert sure.mean() > 0.5  # most of the image is decided outright
    out = steps.fused
    equal_any = np.zeros(sure.shape, bool)
    for f in frames:
        equal_any |= (out == f).all(axis=-1)
    assert equal_any[sure].all()
    # and the written 16-bit values are the source's
    as16 = np.round(out * 65535).astype(np.uint16)
    src16 = [np.round(f * 65535).astype(np.uint16) for f in frames]
    assert ((as16[sure] == src16[0][sure]).all(-1) | (as16[sure] == src16[1][sure]).all(-1)).all()


def test_vaeedof_not_run_when_every_pixel_is_trusted():
    frames, sharp = two_frames()
    fake = FakeVAEEDOF(np.zeros_like(sharp), frames[0])
    engine = HybridEngine(fake, HybridConfig(trust_low=0.0, trust_high=1e-6))  # any confidence is enough
    steps = engine.steps(frames)
    if (steps.trust < 1).any():
        pytest.skip("decision left pixels untrusted on this seed")
    assert fake.calls == [] and steps.vaeedof is None


def test_region_no_frame_shows_sharp_comes_from_vaeedof():
    box = (slice(50, 110), slice(20, 80))  # inside frame 0's sharp half: ambiguous
    frames, sharp = two_frames(ambiguous=box)
    fake = FakeVAEEDOF(sharp, frames[0])  # an oracle VAEEDOF: returns the all-in-focus truth
    steps = HybridEngine(fake, HybridConfig(colour_sigma=0.05)).steps(frames)
    assert fake.calls, "VAEEDOF should run for the ambiguous box"
    inner = (slice(60, 100), slice(30, 70))
    assert steps.trust[inner].mean() < 0.5
    err_h = np.abs(steps.fused[inner] - sharp[inner]).mean()
    err_d = np.abs(steps.decision.fused[inner] - sharp[inner]).mean()
    assert err_h < 0.5 * err_d
    # only the needed patches are asked for: the need mask covers the box, not the whole image
    need = fake.calls[0][1]
    assert need is not None and need.mean() < 0.9


def test_colour_match_removes_a_low_frequency_offset():
    rng = np.random.default_rng(3)
    d = cv2.GaussianBlur(rng.random((96, 96, 3), dtype=np.float32), (0, 0), 2)
    v = np.clip(d + 0.06, 0, 1)
    valid = np.ones((96, 96), bool)
    m = colour_match(v, d, valid, sigma=6.0)
    assert abs(float((v - d).mean())) > 0.05
    assert abs(float((m - d).mean())) < 0.003
    # only where V is valid: outside, the offset is taken from the valid neighbourhood
    valid[:, :48] = False
    m2 = colour_match(v, d, valid, sigma=6.0)
    assert abs(float((m2[:, 48:] - d[:, 48:]).mean())) < 0.003


def test_agreement_and_band_maps():
    a = np.full((40, 40, 3), 0.5, np.float32)
    b = a.copy()
    b[:, 20:] += 0.2
    agree = agreement_map([a, a], a, tol=2 / 255, radius=1)
    assert agree.min() == 1.0
    agree = agreement_map([a, b], a, tol=2 / 255, radius=1)
    assert agree[:, :15].min() == 1.0 and agree[:, 25:].max() == 0.0
    labels = np.zeros((40, 40), np.uint8)
    labels[:, 20:] = 1
    band = boundary_band(labels, 4)
    assert band[:, 15:25].all() and not band[:, :14].any() and not band[:, 26:].any()


def test_real_networks_end_to_end(vae):
    """With the real TAEF2 and a small seeded U-Net: runs, keeps the contract, and the ambiguous
    box differs from the decision output while confident pixels do not."""
    from conftest import small_fusion

    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.config import TileConfig
    from focusstack.engines.vaeedof import VAEEDOFEngine

    box = (slice(40, 90), slice(20, 70))
    frames, _ = two_frames(128, 160, seed=2, ambiguous=box)
    backend = TorchBackend(vae, small_fusion(), device="cpu", precision="fp32")
    engine = HybridEngine(VAEEDOFEngine(backend, TileConfig(tile=256)))
    steps = engine.steps(frames)
    out = steps.fused
    assert out.shape == frames[0].shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    sure = steps.confidence >= 1
    assert sure.any()
    assert np.array_equal(out[sure], steps.decision.fused[sure])
    assert steps.vaeedof is not None and steps.info["vaeedof_area"] > 0


@pytest.mark.parametrize("bad", [dict(trust_low=0.6, trust_high=0.5), dict(agree_tol=-1.0), dict(feather=float("nan"))])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        HybridConfig(**bad)


def test_cli_hybrid_keeps_16_bit_sources(tmp_path, vae_dir):
    """`fuse` with no --engine runs the hybrid; --save-steps writes its maps; where the saved
    confidence is 1 the 16-bit output equals a source frame's 16-bit values exactly."""
    import json

    import tifffile
    from typer.testing import CliRunner

    from focusstack.cli.app import app
    from focusstack.networks.weights import default_fusion_dir

    if not (default_fusion_dir() / "model.safetensors").is_file():
        pytest.skip("no trained Fusion U-Net")
    box = (slice(50, 110), slice(20, 80))
    frames, _ = two_frames(ambiguous=box)
    stack = tmp_path / "stack"
    stack.mkdir()
    src16 = []
    for i, f in enumerate(frames):
        a = np.round(f * 65535).astype(np.uint16)
        src16.append(a)
        tifffile.imwrite(stack / f"f{i}.tif", a)
    out, steps_dir = tmp_path / "out.tif", tmp_path / "steps"
    r = CliRunner().invoke(app, ["fuse", str(stack), "-o", str(out), "--no-align", "--engine", "hybrid", "--save-steps", str(steps_dir),
                                 "--vae-weights", str(vae_dir), "--json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["engine"] == "hybrid"
    got = tifffile.imread(out)
    assert got.dtype == np.uint16 and got.shape == src16[0].shape
    for name in ("decision_map", "confidence", "trust", "decision", "vaeedof", "hybrid", "info"):
        assert (steps_dir / f"{name}.png").is_file() or (steps_dir / f"{name}.json").is_file(), name
    from focusstack.io import read_image

    conf = read_image(steps_dir / "confidence.png").pixels[..., 0]
    sure = conf >= 1.0
    assert sure.mean() > 0.3
    exact = (got == src16[0]).all(-1) | (got == src16[1]).all(-1)
    assert exact[sure].all()


def test_save_steps_needs_the_hybrid_engine_and_an_empty_folder(tmp_path):
    from focusstack.config import FuseConfig
    from focusstack.errors import ConfigError, OutputExistsError
    from focusstack.jobs.fuse import check_steps_dir

    with pytest.raises(ConfigError, match="--engine hybrid"):
        FuseConfig(engine="decision", save_steps=tmp_path / "s")
    folder = tmp_path / "steps"
    check_steps_dir(folder, overwrite=False)  # new: fine
    folder.mkdir()
    check_steps_dir(folder, overwrite=False)  # empty: fine
    (folder / "trust.png").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_steps_dir(folder, overwrite=False)
    check_steps_dir(folder, overwrite=True)


def _frames_named_like_steps(tmp_path, names: list[str], seed: int):
    """Two 16-bit frames in ``tmp_path/stack``, named like step images: ``(frames, folder,
    paths, their bytes)``."""
    from focusstack.io import write_image

    frames, _ = two_frames(64, 96, seed=seed)
    folder = tmp_path / "stack"
    folder.mkdir()
    inputs = [folder / n for n in names]
    for p, f in zip(inputs, frames):
        write_image(p, f, bit_depth=16)
    return frames, folder, inputs, {p: p.read_bytes() for p in inputs}


def test_save_steps_never_writes_over_an_input_frame(tmp_path):
    """--save-steps into the input folder, frames named like step images: refused before any
    work and by the writer itself, with nothing written; a frame is never replaced (issue 19, 2)."""
    import json

    from focusstack.engines.hybrid import STEP_IMAGES
    from focusstack.errors import OutputExistsError
    from focusstack.io.steps import check_steps_protected, write_steps

    frames, folder, inputs, before = _frames_named_like_steps(tmp_path, ["decision.png", "trust.png"], seed=3)
    with pytest.raises(OutputExistsError, match="input frame") as e:
        check_steps_protected(folder, HybridEngine.step_images, inputs)
    assert "fix:" in str(e.value)
    steps = HybridEngine(None).steps(frames)
    assert set(steps.visualise()) <= set(STEP_IMAGES) == set(HybridEngine.step_images)
    with pytest.raises(OutputExistsError, match="one of the inputs"):
        write_steps(steps, folder, protected=inputs)  # overwrite=True inside, yet refused
    assert {p: p.read_bytes() for p in inputs} == before
    assert sorted(p.name for p in folder.iterdir()) == ["decision.png", "trust.png"]  # all or none

    out = tmp_path / "steps"
    write_steps(steps, out, protected=inputs)
    assert {"hybrid.png", "trust.png", "info.json"} <= {p.name for p in out.iterdir()}
    assert "trust_mean" in json.loads((out / "info.json").read_text())
    np.testing.assert_array_equal(steps.fused, HybridEngine(None).fuse(frames))  # fuse == steps().fused
    # numpy numbers stay numbers in info.json (a box was written as [0, "87", "339", 510])
    steps.info["vaeedof_box"] = [np.int64(0), np.int64(87), np.int64(339), 510]
    steps.info["trust_mean"] = np.float32(0.5)
    write_steps(steps, tmp_path / "steps2")
    info = json.loads((tmp_path / "steps2" / "info.json").read_text())
    assert info["vaeedof_box"] == [0, 87, 339, 510] and info["trust_mean"] == 0.5
    assert {p: p.read_bytes() for p in inputs} == before


def test_fuse_save_steps_into_the_input_folder_never_replaces_a_frame(tmp_path):
    from focusstack.config import AlignConfig, FuseConfig
    from focusstack.errors import OutputExistsError
    from focusstack.jobs.fuse import fuse_stack

    frames, folder, inputs, before = _frames_named_like_steps(tmp_path, ["decision.png", "hybrid.png"], seed=4)
    config = FuseConfig(engine="hybrid", save_steps=folder, overwrite=True, show_progress=False,
                        align=AlignConfig(enabled=False))
    refused = False
    try:
        fuse_stack([folder], tmp_path / "out.png", config, engine=HybridEngine(None))
    except OutputExistsError:
        refused = True
    assert {p: p.read_bytes() for p in inputs} == before, "a --save-steps image replaced an input frame"
    assert refused and not (tmp_path / "out.png").exists()
