import numpy as np
import pytest
import torch

from focusstack.backends.torch_backend import TorchBackend
from focusstack.metrics import psnr
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig, expand_frames
from focusstack.networks.taesd import TAESD

from conftest import shared_path


def _photo(name_index: int, size: int = 256) -> np.ndarray:
    from PIL import Image

    files = sorted(shared_path("data", "backgrounds", "bsds68", "original").glob("*.jpg"))
    a = np.asarray(Image.open(files[name_index]).convert("RGB"), dtype=np.float32) / 255
    return a[: size // 8 * 8, : size // 8 * 8][: a.shape[0] // 8 * 8, : a.shape[1] // 8 * 8]


def test_taef2_loads_strictly_and_round_trips(vae):
    # the first 6 BSDS photos, whole, in fp32: the average must clear 27 dB (a wrong layer or a
    # misread weight drops it below 20). The full set: benchmarks/vae_roundtrip.py.
    b = TorchBackend(vae, None, device="cpu", precision="fp32")
    scores = []
    for i in range(6):
        img = _photo(i, 480)[:, :480]
        y = b.decode(b.encode(img.transpose(2, 0, 1)[None].copy()))[0].transpose(1, 2, 0)
        scores.append(psnr(y, img))
    assert np.mean(scores) >= 27.0, scores


def test_bf16_agrees_with_fp32_on_a_real_photo(vae):
    # a real stack frame (pcb7): bf16 in channels_last stays within 2/255 of fp32 everywhere.
    # (On heavily textured BSDS crops the mean stays under 1/255 and the 99.9th percentile
    # under 8/255, well below TAEF2's own reconstruction error.)
    from PIL import Image

    frame = sorted(shared_path("data", "stacks", "pcb7").glob("*.jpg"))[0]
    img = np.asarray(Image.open(frame).convert("RGB"), dtype=np.float32)[:256, 256:512] / 255
    x = img.transpose(2, 0, 1)[None].copy()
    outs = {}
    for p in ("fp32", "bf16"):
        b = TorchBackend(vae, None, device="cpu", precision=p)
        outs[p] = b.decode(b.encode(x))
    diff = np.abs(outs["fp32"] - outs["bf16"])
    assert diff.max() <= 2 / 255, diff.max() * 255
    assert diff.mean() <= 0.5 / 255


def test_taesd_shapes_and_checks():
    m = TAESD().eval()
    with torch.no_grad():
        z = m.encode(torch.rand(2, 3, 64, 96))
        assert z.shape == (2, 32, 8, 12)
        assert m.decode(z).shape == (2, 3, 64, 96)
    with pytest.raises(ValueError, match="multiples of 8"):
        m.encode(torch.rand(1, 3, 60, 64))
    with pytest.raises(ValueError, match="decode expects"):
        m.decode(torch.rand(1, 16, 8, 8))


def test_fusion_unet_shapes_and_untrained_head_is_the_mean():
    torch.manual_seed(0)
    m = FusionUNet(FusionUNetConfig(channels=(32, 64, 64), attention_heads=2)).eval()
    z = torch.randn(2, 7, 32, 16, 24)
    with torch.no_grad():
        y5 = m(z)
        y4 = m(z.flatten(1, 2))
    assert y5.shape == (2, 32, 16, 24)
    torch.testing.assert_close(y5, y4)
    torch.testing.assert_close(y5, z.mean(1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        m(torch.randn(1, 7, 32, 12, 12))
    with pytest.raises(ValueError, match="7x32"):
        m(torch.randn(1, 6 * 32, 16, 16))


def test_config_round_trips_through_json(tmp_path):
    cfg = FusionUNetConfig(channels=(32, 64, 96), head="latent")
    cfg.save(tmp_path / "config.json")
    assert FusionUNetConfig.load(tmp_path / "config.json") == cfg


def test_expand_frames_duplicates_cyclically():
    z = torch.arange(3).float().view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 2)
    e = expand_frames(z, 7)
    assert e.shape[1] == 7
    assert e[0, :, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError):
        expand_frames(torch.zeros(1, 8, 1, 1, 1), 7)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        FusionUNetConfig.from_dict({"frames": 7, "depth": 4})


def test_config_refuses_unknown_keys_with_the_fix_and_defaults_missing_ones():
    from focusstack.errors import ConfigError

    d = FusionUNetConfig().to_dict()
    assert FusionUNetConfig.from_dict(d) == FusionUNetConfig()
    del d["groups"]
    assert FusionUNetConfig.from_dict(d) == FusionUNetConfig()  # a missing key takes its default
    with pytest.raises(ConfigError, match="unknown Fusion U-Net config keys: depth") as info:
        FusionUNetConfig.from_dict(d | {"depth": 4})
    assert isinstance(info.value, ValueError) and info.value.expected and info.value.fix
    with pytest.raises(ConfigError, match="JSON object"):
        FusionUNetConfig.from_dict([7])
