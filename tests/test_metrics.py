"""The eval metrics: ideal scores, hand-computed values, agreement with scikit-image, Q^AB/F on
real pairs, unavailable weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import shared_path
from focusstack.io import read_image
from focusstack.metrics.fusion import QABF_MAX, GAMMA_A, KAPPA_A, SIGMA_A, luma, q_abf, q_mi, q_y
from focusstack.metrics.masks import decision_miou, implied_decision, labels_from_masks, miou
from focusstack.metrics.registry import BY_KEY, METRICS, Unavailable, resolve_metric

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFFLINE_REF = [m.key for m in METRICS if m.kind == "reference" and not m.weights]


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish seeded RGB texture in [0.05, 0.95] (real edges at several scales)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for sigma, amp in ((6, 0.5), (2, 0.3), (0.7, 0.2)):
        n = ndi.gaussian_filter(rng.random((h, w, 3)), (sigma, sigma, 0))
        n = (n - n.min()) / (n.max() - n.min())
        out += amp * n.astype(np.float32)
    return (0.05 + 0.9 * (out - out.min()) / (out.max() - out.min())).astype(np.float32)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def _scorer(keys):
    from focusstack.metrics.reference import ReferenceScorer

    return ReferenceScorer(keys)


# ---- registry --------------------------------------------------------------------------------


def test_registry_has_the_papers_metrics():
    labels = {m.label for m in METRICS}
    table1 = {"DISTS", "PieAPP", "HaarPSI", "IW-SSIM", "LPIPS", "MDSI", "MSE", "MS-SSIM", "MS-GMSD", "PSNR", "SSIM"}
    assert table1 <= labels and {"Q^MI", "Q^AB/F", "Q^Y", "mIoU"} <= labels
    # directions as in VAEEDOF Table 1
    for key in ("dists", "pieapp", "lpips", "mdsi", "mse", "ms_gmsd"):
        assert not BY_KEY[key].higher_is_better
    for key in ("haarpsi", "iw_ssim", "ms_ssim", "psnr", "ssim", "q_mi", "q_abf", "q_y", "miou"):
        assert BY_KEY[key].higher_is_better
    assert resolve_metric("MS-SSIM").key == "ms_ssim" and resolve_metric("Q^AB/F").key == "q_abf"
    assert resolve_metric("nope") is None


# ---- ideal scores ----------------------------------------------------------------------------


def test_identical_images_give_the_ideal_reference_scores():
    x = _texture(176, 192)
    out = _scorer(OFFLINE_REF).score(_t(x), _t(x))
    for key in OFFLINE_REF:
        v = out[key]
        assert not isinstance(v, Unavailable), (key, v)
        assert float(v[0]) == pytest.approx(BY_KEY[key].ideal, abs=1e-5), key


def test_identical_images_give_the_ideal_fusion_scores():
    a = _texture(64, 80, seed=1)
    for n in (1, 2, 3):
        assert q_mi([a] * n, a) == pytest.approx(2.0, abs=1e-12)
        assert q_abf([a] * n, a) == pytest.approx(QABF_MAX, abs=1e-6)
        assert q_y([a] * n, a) == pytest.approx(1.0, abs=1e-6)
    assert BY_KEY["q_abf"].ideal == pytest.approx(QABF_MAX)
    lab = (a[..., 0] > 0.5).astype(np.int64)
    assert miou(lab, lab) == 1.0


def test_a_worse_output_scores_worse_on_every_reference_metric():
    x = _texture(176, 192)
    rng = np.random.default_rng(3)
    y = np.clip(x + rng.normal(0, 0.08, x.shape).astype(np.float32), 0, 1)
    out = _scorer(OFFLINE_REF).score(_t(y), _t(x))
    for key in OFFLINE_REF:
        v, ideal = float(out[key][0]), BY_KEY[key].ideal
        if BY_KEY[key].higher_is_better:
            assert v < ideal - 1e-3, key
        else:
            assert v > ideal + 1e-6, key


# ---- hand-computed values --------------------------------------------------------------------


def test_mse_and_psnr_of_a_constant_offset():
    x = _texture(40, 48) * 0.8 + 0.05  # in [0.09, 0.81]: +0.05 stays inside [0, 1]
    out = _scorer(["mse", "psnr"]).score(_t(x + 0.05), _t(x))
    assert float(out["mse"][0]) == pytest.approx(0.0025, rel=1e-5)
    # piq: 10 log10(1 / (MSE + 1e-8))
    assert float(out["psnr"][0]) == pytest.approx(10 * math.log10(1 / (0.0025 + 1e-8)), abs=1e-3)
    assert float(out["psnr"][0]) == pytest.approx(26.0206, abs=1e-3)


def test_q_abf_of_a_contrast_scaled_copy():
    # F = c * S: every Sobel gradient scales by c (G = c), orientations are kept (A = 1), so
    # Q = Q_g(c) Q_a(1) = 0.9994 / (1 + e^(-15 (c - 0.5))) * 0.9879 / (1 + e^(-22 * 0.2)).
    s = _texture(48, 56, seed=2)
    qa1 = GAMMA_A / (1 + math.exp(KAPPA_A * (1 - SIGMA_A)))
    assert q_abf([s], 0.5 * s) == pytest.approx(0.4997 * qa1, abs=1e-6)  # Q_g(0.5) = 0.9994 / 2
    assert 0.4997 * qa1 == pytest.approx(0.487666, abs=1e-6)
    c = 0.8
    assert q_abf([s], c * s) == pytest.approx(0.9994 / (1 + math.exp(-15 * (c - 0.5))) * qa1, abs=1e-6)


def test_q_abf_of_a_flat_output_and_of_complementary_edges():
    s = _texture(48, 56, seed=4)
    # a flat output keeps no edge: G = 0 everywhere, so Q = Q_g(0) * Q_a(A) with
    # Q_g(0) = 0.9994 / (1 + e^7.5); a zero gradient's orientation is pi/2, so A varies with the
    # source's edges and Q lies between Q_g(0) Q_a(0) and Q_g(0) Q_a(1)
    flat = np.full_like(s, 0.5)
    qg0 = 0.9994 / (1 + math.exp(7.5))
    q = q_abf([s], flat)
    assert qg0 * GAMMA_A / (1 + math.exp(KAPPA_A * (0.0 - SIGMA_A))) <= q <= qg0 * GAMMA_A / (1 + math.exp(KAPPA_A * (1.0 - SIGMA_A)))
    assert q < 6e-4
    # A has texture on the left, B on the right, both flat elsewhere; F takes each textured
    # half: every edge is kept. Columns near the seam see both halves, so compare away from it
    a = s.copy()
    b = s.copy()
    a[:, 28:] = 0.5
    b[:, :28] = 0.5
    assert q_abf([a, b], s) < QABF_MAX  # the seam: a flat half meets texture
    assert q_abf([a[:, :24], b[:, :24]], s[:, :24]) == pytest.approx(QABF_MAX, abs=1e-6)
    with pytest.raises(Unavailable, match="no edges"):
        q_abf([flat, flat], s)


def test_q_mi_hand_cases():
    h = w = 16
    # A: four vertical bands 0, 1/3, 2/3, 1 (H = 2 bits); F: left/right halves (H = 1 bit) is a
    # function of A, so MI = 1 bit and NMI = 2 * 1 / (2 + 1); one source: Q = 2 * 2/3 = 4/3
    a = np.repeat(np.repeat(np.array([[0, 1 / 3, 2 / 3, 1]], np.float32), h, 0), w // 4, 1)
    f = np.repeat(np.repeat(np.array([[0.0, 1.0]], np.float32), h, 0), w // 2, 1)
    assert q_mi([a], f) == pytest.approx(4 / 3, abs=1e-12)
    # left/right against top/bottom: independent, MI = 0
    g = f.T.copy()
    assert q_mi([g], f) == pytest.approx(0.0, abs=1e-12)
    # two sources: 2 * mean(2/3, 0) = 2/3
    assert q_mi([a, g], f) == pytest.approx(2 / 3, abs=1e-12)


def test_q_mi_agrees_with_scikit_image_nmi():
    # skimage's NMI is (H(A) + H(B)) / H(A, B); so 2 MI / (H(A) + H(F)) = 2 - 2 / NMI.
    from skimage.metrics import normalized_mutual_information

    a = _texture(64, 64, seed=5)
    b = _texture(64, 64, seed=6)
    f = 0.5 * a + 0.5 * b

    def q8(x):
        y = np.floor(luma(x).numpy() * 255 + 0.5)
        y[0, 0], y[0, 1] = 0, 255  # full range, so skimage's 256 bins are the 256 levels
        return y

    qa, qb, qf = q8(a), q8(b), q8(f)
    expected = 2 * np.mean([2 - 2 / normalized_mutual_information(x, qf, bins=256) for x in (qa, qb)])
    assert q_mi([qa / 255, qb / 255], qf / 255) == pytest.approx(expected, abs=1e-9)


def test_q_y_hand_case_flat_images():
    # Flat sources (0.5) are alike (SSIM 1 >= 0.75) with zero variance (lambda = 1/2 each); a flat
    # output 0.25 gives SSIM = (2 * 0.5 * 0.25 + C1) / (0.5^2 + 0.25^2 + C1), C2 cancels.
    c1 = 1e-4
    s = np.full((20, 20, 3), 0.5, np.float32)
    f = np.full((20, 20, 3), 0.25, np.float32)
    assert q_y([s, s], f) == pytest.approx((0.25 + c1) / (0.3125 + c1), abs=1e-6)


def test_q_y_takes_the_best_source_where_sources_differ():
    a = _texture(40, 40, seed=7)
    b = 1 - a  # anti-correlated: SSIM(A, B) < 0.75 in every window -> max branch
    assert q_y([a, b], a) == pytest.approx(1.0, abs=1e-6)
    assert q_y([a, b], b) == pytest.approx(1.0, abs=1e-6)
    assert q_y([a, b], 0.5 * (a + b)) < 0.5


def test_miou_known_masks():
    gt = np.zeros((4, 4), np.int64)
    gt[:, 2:] = 1
    pred = np.zeros((4, 4), np.int64)
    pred[:, 3:] = 1
    # class 0: inter 8, union 12; class 1: inter 4, union 8 -> (2/3 + 1/2) / 2 = 7/12
    assert miou(pred, gt) == pytest.approx(7 / 12)
    assert miou(1 - gt, gt) == 0.0
    # a binary foreground mask (white = frame 0) -> labels 0 where set
    lab = labels_from_masks([np.array([[1.0, 0.0]])])
    assert lab.tolist() == [[0, 1]]
    lab3 = labels_from_masks([np.array([[1, 0, 0, 0.0]]), np.array([[1, 1, 0, 0.0]]), np.array([[0, 0, 1, 0.0]])])
    assert lab3.tolist() == [[0, 1, 2, 2]]


def test_implied_decision_recovers_a_composite():
    a = _texture(48, 64, seed=8)
    b = _texture(48, 64, seed=9)
    gt = np.zeros((48, 64), np.int64)
    gt[:, 32:] = 1
    f = np.where(gt[..., None] == 0, a, b)
    lab = implied_decision([a, b], f)
    assert miou(lab, gt) > 0.9 and decision_miou(lab, gt, [a, b]) > 0.9
    # a blend is scored where the frames differ, and loses
    assert decision_miou(implied_decision([a, b], 0.5 * (a + b)), gt, [a, b]) < 0.7


def test_decision_miou_ignores_choices_between_alike_frames():
    a = _texture(48, 64, seed=8)
    b = _texture(48, 64, seed=9)
    gt = np.zeros((48, 64), np.int64)
    gt[:, 32:] = 1
    # frame 2 equals frame 1: choosing 2 where the GT says 1 is as right as choosing 1
    pred = gt.copy()
    pred[:, 48:] = 2
    assert miou(pred, gt) < 0.7
    assert decision_miou(pred, gt, [a, b, b]) == pytest.approx(1.0)
    # ... but not where the frames differ
    assert decision_miou(pred, gt, [a, b, a]) < 0.7
    # identical frames: no pixel holds a decision -> unavailable, not a number
    with pytest.raises(Unavailable):
        decision_miou(pred, gt, [a, a])


# ---- agreement with scikit-image -------------------------------------------------------------


def _pairs():
    root = shared_path("data", "pairs", "lytro")
    a = read_image(root / "lytro-01-A.jpg").pixels
    b = read_image(root / "lytro-01-B.jpg").pixels
    rng = np.random.default_rng(11)
    noisy = np.clip(a + rng.normal(0, 0.03, a.shape).astype(np.float32), 0, 1)
    return [(a, b), (a, noisy), (a, np.clip(a * 0.9 + 0.05, 0, 1))]


def test_psnr_and_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    sc = _scorer(["psnr", "ssim"])
    for gt, pred in _pairs():
        out = sc.score(_t(pred), _t(gt))
        g64, p64 = gt.astype(np.float64), pred.astype(np.float64)
        ref_psnr = peak_signal_noise_ratio(g64, p64, data_range=1.0)
        ref_ssim = structural_similarity(g64, p64, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1.0, channel_axis=-1)
        assert abs(float(out["psnr"][0]) - ref_psnr) < 0.01
        assert abs(float(out["ssim"][0]) - ref_ssim) < 0.001


# ---- Q^AB/F on the real pairs ----------------------------------------------------------------


def _focus_fusion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A plain decision fusion: per pixel, the frame with more smoothed Laplacian energy."""
    from scipy import ndimage as ndi

    ea = ndi.gaussian_filter(np.abs(ndi.laplace(luma(a).numpy())), 5)
    eb = ndi.gaussian_filter(np.abs(ndi.laplace(luma(b).numpy())), 5)
    m = ndi.gaussian_filter((ea > eb).astype(np.float32), 3) > 0.5
    return np.where(m[..., None], a, b)


def test_q_abf_prefers_a_good_fusion_to_the_mean_on_betafusion():
    # the good fusion takes A where the hand-made mask says A is sharp, B elsewhere. Pair 06 has
    # little focus difference between its frames: its margin is small (0.003), the others 0.08+
    root = shared_path("data", "pairs", "betafusion")
    margins = []
    for i in range(1, 11):
        s = f"BetaFusion-{i:02d}"
        a = read_image(root / f"{s}-A.jpg").pixels
        b = read_image(root / f"{s}-B.jpg").pixels
        m = (read_image(root / f"{s}-M.png").pixels.mean(-1) >= 0.5)[..., None]  # foreground of A
        good = np.where(m, a, b)
        mean = 0.5 * (a + b)
        qg, qm = q_abf([a, b], good), q_abf([a, b], mean)
        assert qg > qm, (s, qg, qm)
        margins.append(qg - qm)
    assert np.mean(margins) > 0.1 and sum(m > 0.05 for m in margins) >= 8


def test_q_abf_prefers_a_good_fusion_to_the_mean_on_lytro():
    root = shared_path("data", "pairs", "lytro")
    for i in range(1, 6):
        a = read_image(root / f"lytro-{i:02d}-A.jpg").pixels
        b = read_image(root / f"lytro-{i:02d}-B.jpg").pixels
        qg, qm = q_abf([a, b], _focus_fusion(a, b)), q_abf([a, b], 0.5 * (a + b))
        assert qg > qm + 0.05, (i, qg, qm)


# ---- unavailable ----------------------------------------------------------------------------


def test_missing_weights_are_unavailable_not_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise AssertionError("eval must not touch the network without --download-weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    x = _texture(64, 64)
    out = _scorer(["lpips", "dists", "pieapp", "psnr"]).score(_t(x), _t(x))
    folder = str(tmp_path / "torch" / "hub" / "checkpoints")
    for key, name in (("lpips", "lpips_weights.pt"), ("dists", "dists_weights.pt"), ("pieapp", "PieAPPv0.1.pth")):
        assert isinstance(out[key], Unavailable), key
        assert name in str(out[key]) and folder in str(out[key])
    assert "vgg16-397923af.pth" in str(out["lpips"])
    assert float(out["psnr"][0]) == pytest.approx(80.0)


def test_download_failure_is_unavailable(tmp_path, monkeypatch):
    from focusstack.metrics.reference import ReferenceScorer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    sc = ReferenceScorer(["pieapp"], allow_download=True, download_timeout_s=1)
    out = sc.score(_t(_texture(64, 64)), _t(_texture(64, 64)))
    assert isinstance(out["pieapp"], Unavailable) and "network unreachable" in str(out["pieapp"])


def test_small_images_are_unavailable_with_the_size_needed():
    x = _texture(64, 64)
    out = _scorer(["ms_ssim", "iw_ssim", "ssim"]).score(_t(x), _t(x))
    for key in ("ms_ssim", "iw_ssim"):
        assert isinstance(out[key], Unavailable)
        assert "image too small (needs >= 161 px" in str(out[key])
    assert float(out["ssim"][0]) == pytest.approx(1.0)
    tiny = _texture(8, 8)
    out = _scorer(["haarpsi", "ms_gmsd", "ssim"]).score(_t(tiny), _t(tiny))
    assert all(isinstance(v, Unavailable) and "image too small" in str(v) for v in out.values())


def test_missing_piq_names_the_extra(monkeypatch):
    import sys

    from focusstack.errors import FocusstackError
    from focusstack.metrics.reference import import_piq

    monkeypatch.setitem(sys.modules, "piq", None)  # import piq -> ImportError
    with pytest.raises(FocusstackError, match=r"focusstack\[eval\]"):
        import_piq()


# ---- difficulty ----------------------------------------------------------------------------


def test_difficulty_is_zero_where_a_frame_holds_the_gt_and_grows_with_blur():
    from scipy import ndimage as ndi

    from focusstack.metrics.difficulty import difficulty, patches

    gt = _texture(128, 192, seed=12)
    blurred = ndi.gaussian_filter(gt, (3, 3, 0))
    sharp_left = gt.copy()
    sharp_left[:, 64:] = blurred[:, 64:]  # the left 64 px column of patches is in focus
    tt = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)  # noqa: E731
    d = difficulty(tt(gt), torch.stack([tt(sharp_left), tt(blurred)]), 64)
    assert d.shape == (6,) and patches(tt(gt), 64).shape == (6, 3, 64, 64)
    grid = d.reshape(2, 3)
    assert torch.all(grid[:, 0].abs() < 1e-5)  # a frame holds these patches exactly
    assert torch.all(grid[:, 1:] > 0.05)  # only blurred copies of these


def test_weights_on_disk_are_used_offline_and_a_corrupt_file_is_unavailable(tmp_path, monkeypatch):
    """The plumbing with stand-in files and models (the real weights cannot be downloaded here):
    files present -> the model is built from the cache and scores; a model that fails to load
    its file -> unavailable naming the files, never a number."""
    import piq

    from focusstack.metrics.reference import ReferenceScorer

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ck = tmp_path / "torch" / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    for name in ("vgg16-397923af.pth", "lpips_weights.pt", "PieAPPv0.1.pth"):
        (ck / name).write_bytes(b"stand-in")

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, reduction="mean"):
            super().__init__()

        def forward(self, x, y):
            return (x - y).abs().mean(dim=(1, 2, 3))

    class BrokenPieAPP(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("invalid load key")

    monkeypatch.setattr(piq, "LPIPS", FakeLPIPS)
    monkeypatch.setattr(piq, "PieAPP", BrokenPieAPP)
    x = _texture(64, 64)
    out = _scorer(["lpips", "pieapp", "dists"]).score(_t(x), _t(np.clip(x + 0.1, 0, 1)))
    assert float(out["lpips"][0]) > 0.05
    assert isinstance(out["pieapp"], Unavailable) and "PieAPPv0.1.pth" in str(out["pieapp"])
    assert "could not load" in str(out["pieapp"])
    assert isinstance(out["dists"], Unavailable) and "dists_weights.pt" in str(out["dists"])
    assert "vgg16" not in str(out["dists"]).split("weights missing:")[1].split("not in")[0]
