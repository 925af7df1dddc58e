"""``focusstack train keb``: train the Kernel Estimation Branch.

Loss: the paper's Eq. 12, ``|sigma_gt - sigma_pd|`` (L1, px). Batches (:func:`keb_batch`): half
are the KEB check's setting (a clean all-in-focus crop and its Gaussian-blurred copy, random
sigma, mask 1), half are crops around the subject of 2-frame renders (near = sharp subject,
far = blurred subject, a perturbed GT matte, the renderer's sigma). Validation: mean absolute
sigma error on a fixed seeded batch from the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focusstack.networks.keb import KEB, KEBConfig
from focusstack.refinement.models import load_keb
from focusstack.training.tr_data import clean_images, keb_batch, list_tr_samples
from focusstack.training.tr_configs import TrainKEBConfig  # noqa: F401  (re-exported)
from focusstack.training.tr_loop import LoopConfig, Task, export_checkpoint, model_device, run_training, warm_start


@dataclass(frozen=True)
class KEBDraw:
    """``draw(rng)`` of the training loop: one KEB batch (picklable, for workers)."""

    samples: list
    clean: list
    batch_size: int
    crop: int
    synthetic_share: float

    def __call__(self, rng: np.random.Generator) -> tuple:
        return keb_batch(self.samples, self.clean, rng, self.batch_size, self.crop, self.synthetic_share)


def train_keb(cfg: TrainKEBConfig) -> dict:
    train = list_tr_samples(cfg.data, "train")
    val = list_tr_samples(cfg.data, "val", required=False)
    clean = clean_images(train, cfg.clean_limit)
    vsrc = val or train[-8:]  # a dataset without a validation split is scored on training samples
    vx, vs = keb_batch(vsrc, clean_images(vsrc), np.random.default_rng(12345), cfg.val_examples, cfg.crop, cfg.synthetic_share)
    torch.manual_seed(cfg.seed)  # a fresh model's initial weights follow --seed (torch seeds its default generator at random)
    model, init_steps = warm_start(cfg.init, load_keb, {"channels": cfg.channels}, lambda: KEB(KEBConfig(channels=cfg.channels or KEBConfig.channels, hidden=cfg.hidden, scales=tuple(cfg.scales))))
    arch = model.cfg

    draw = KEBDraw(train, clean, cfg.batch_size, cfg.crop, cfg.synthetic_share)

    def loss(m: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, s = batch
        return (m(x) - s).abs().mean(), {}

    def validate(ema: torch.nn.Module) -> dict:
        with torch.inference_mode():
            p = ema(vx.to(model_device(ema))).cpu()
        err = (p - vs).abs()
        return {"val_mae_px": float(err.mean()), "val_rel_err": float((err / vs).mean())}

    task = Task(model, arch.to_dict(), draw, loss, validate, recipe="focusstack train keb", init=cfg.init, init_steps=init_steps)
    loop = LoopConfig(
        out=cfg.out, steps=cfg.steps, lr=cfg.lr, val_every=cfg.val_every, minutes=cfg.minutes, seed=cfg.seed,
        export=cfg.export, show_progress=cfg.show_progress, threads=cfg.threads, device=cfg.device, workers=cfg.workers,
    )
    summary = run_training(task, loop)
    summary["train_samples"], summary["val_samples"] = len(train), len(val)
    summary["data"] = str(cfg.data)
    summary["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()}
    return summary


def export_keb_checkpoint(run: Path, folder: Path) -> int:
    """Export the EMA KEB of a run folder's checkpoint into ``folder`` (e.g. models/keb)."""
    return export_checkpoint(run, folder, lambda d: KEB(KEBConfig.from_dict(d)), "focusstack train keb")
