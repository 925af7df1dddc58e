"""`focusstack train fusion` end to end on a tiny rendered dataset: trains, validates, resumes, exports."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.networks.weights import load_fusion

runner = CliRunner()


def test_train_fusion_runs_resumes_and_exports(tmp_path, vae_dir, one_torch_thread):
    data, run, model = tmp_path / "data", tmp_path / "run", tmp_path / "model"
    r = runner.invoke(app, ["render-dataset", str(data), "--samples", "6", "--resolution", "128", "--frames-min", "2",
                            "--frames-max", "3", "--val-fraction", "0.34", "-q"])
    assert r.exit_code == 0, r.output
    args = ["train", "fusion", "--data", str(data), "--out", str(run), "--batch-size", "2", "--crop", "8",
            "--val-every", "2", "--val-samples", "1", "--vae-weights", str(vae_dir), "-q", "--json",
            "--pixel-weight", "0.5", "--pixel-patches", "1"]
    r = runner.invoke(app, args + ["--steps", "2"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["steps"] == 2 and first["train_samples"] >= 3 and first["val_samples"] >= 1
    assert first["config"]["pixel_weight"] == 0.5 and first["config"]["pixel_patches"] == 1
    # validation figures are real numbers against the ground truth, with the VAE ceiling beside them
    assert 0 < first["last"]["psnr"] < 100 and 0 < first["last"]["ceiling_psnr"] < 100
    r = runner.invoke(app, args + ["--steps", "3", "--export", str(model)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == 3  # resumed at 2: one more step
    loaded = load_fusion(model)
    assert int(loaded.metadata["trained_steps"]) == 3
    # the validation images can be written for `focusstack eval`: the written fusion scores what
    # evaluate() reported
    import torch

    from focusstack.backends.torch_backend import TorchBackend
    from focusstack.metrics import psnr
    from focusstack.networks.weights import load_vae
    from focusstack.training.data import list_samples, read_rgb
    from focusstack.training.fusion import evaluate

    refs = list_samples(data, "val")[:1]
    files = [run / "latents" / f"{r.id}.safetensors" for r in refs]
    backend = TorchBackend(load_vae(vae_dir), None, device="cpu", precision="fp32")
    m = evaluate(loaded.model, backend, refs, files, torch.float32, write=tmp_path / "w")
    names = sorted(p.name for p in (tmp_path / "w").iterdir())
    assert names == ["best_frame", "fusion", "mean_of_frames", "vae_ceiling"]
    fused = read_rgb(tmp_path / "w" / "fusion" / f"{refs[0].id}.png")
    gt = read_rgb(refs[0].folder / "gt.png")[: fused.shape[0], : fused.shape[1]]
    assert abs(psnr(fused, gt) - m["psnr"]) < 0.01
    from focusstack.io.readers import probe_image

    assert probe_image(tmp_path / "w" / "fusion" / f"{refs[0].id}.png").bit_depth == 16


def test_pixel_loss_is_zero_at_the_target_and_trains_the_prediction(vae, one_torch_thread):
    import pytest
    import torch

    from focusstack.training.fusion import pixel_loss

    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 32, 12, 12, generator=g)
    assert float(pixel_loss(vae, target.clone(), target, 2, 8)) == 0.0
    pred = (target + 0.5 * torch.randn(3, 32, 12, 12, generator=g)).requires_grad_(True)
    loss = pixel_loss(vae, pred, target, 2, 8)
    loss.backward()
    assert float(loss) > 0.001
    # only the first 2 patches and the centred 8 x 8 window get gradient; the decoder stays frozen
    assert pred.grad[:2, :, 2:10, 2:10].abs().sum() > 0
    assert pred.grad[2].abs().sum() == 0 and pred.grad[:, :, :2].abs().sum() == 0
    assert all(p.grad is None for p in vae.decoder.parameters())
    with pytest.raises(ValueError, match="one \\(B, C, h, w\\) shape"):
        pixel_loss(vae, pred[:, :, :4], target, 2, 8)


def test_two_datasets_share_one_cache_without_clashing(tmp_path, vae_dir, one_torch_thread):
    from focusstack.errors import UsageError
    from focusstack.training.data import list_datasets

    a, b, run = tmp_path / "a", tmp_path / "b", tmp_path / "run"
    for d, seed in ((a, "1"), (b, "2")):
        r = runner.invoke(app, ["render-dataset", str(d), "--samples", "3", "--resolution", "64", "--frames-min", "2",
                                "--frames-max", "2", "--val-fraction", "0.34", "--seed", seed, "-q"])
        assert r.exit_code == 0, r.output
    refs = list_datasets([a, b], "train")
    assert {r.id for r in refs if r.folder.parent.parent == a} == {r.id for r in refs if r.folder.parent.parent == b}
    assert len({r.key for r in refs}) == len(refs)  # same ids, distinct cache keys
    r = runner.invoke(app, ["train", "fusion", "--data", str(a), "--data", str(b), "--out", str(run), "--steps", "1",
                            "--batch-size", "1", "--crop", "8", "--val-every", "1", "--val-samples", "1",
                            "--vae-weights", str(vae_dir), "-q", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["train_samples"] == len(refs) and out["config"]["data"] == [str(a), str(b)]
    assert sorted(p.stem for p in (run / "latents").glob("*.safetensors")) == sorted(
        {r.key for r in refs} | {r.id for r in list_datasets([a], "val")[:1]})
    with pytest.raises(UsageError, match="distinct folder names"):
        list_datasets([a, a], "train")
