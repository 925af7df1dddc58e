"""``focusstack train fsb``: train the Foreground Segmentation Branch on 2-frame renders.

Loss: the paper's Eq. 10-11, ``2 L_g + 8 L_m`` (:func:`focusstack.networks.fsb.fsb_loss`).
Batches: augmented crops from :mod:`focusstack.training.tr_data`. Validation: mean of
foreground and background IoU (mIoU) of the EMA model's mask (threshold 0.5) on the dataset's
validation split, whole images, no augmentation. ``init``: start from an exported FSB folder
(e.g. ``models/fsb``; its ``config.json`` gives the architecture, see
:func:`focusstack.training.tr_loop.warm_start`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focusstack.networks.fsb import FSB, FSBConfig, fsb_loss
from focusstack.refinement.features import fsb_input
from focusstack.refinement.models import load_fsb
from focusstack.training.tr_data import fsb_batch, list_tr_samples
from focusstack.training.tr_configs import TrainFSBConfig  # noqa: F401  (re-exported)
from focusstack.training.tr_loop import LoopConfig, Task, export_checkpoint, model_device, run_training, warm_start


def spread(items: list, n: int) -> list:
    """At most ``n`` items taken evenly over ``items`` (all of them when there are fewer)."""
    if n <= 0 or len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


@dataclass(frozen=True)
class FSBDraw:
    """``draw(rng)`` of the training loop: one augmented FSB batch (picklable, for workers)."""

    samples: list
    batch_size: int
    crop: int

    def __call__(self, rng: np.random.Generator) -> tuple:
        return fsb_batch(self.samples, rng, self.batch_size, self.crop)


def miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean of foreground and background IoU of two ``(H, W)`` bool masks."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    ious = []
    for p, g in ((pred, gt), (~pred, ~gt)):
        union = np.logical_or(p, g).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(p, g).sum() / union))
    return float(np.mean(ious))


def train_fsb(cfg: TrainFSBConfig) -> dict:
    train = [s for d in cfg.data for s in list_tr_samples(d, "train")]
    val = spread([s for d in cfg.data for s in list_tr_samples(d, "val", required=False)], cfg.val_samples)
    torch.manual_seed(cfg.seed)  # a fresh model's initial weights follow --seed (torch seeds its default generator at random)
    model, init_steps = warm_start(cfg.init, load_fsb, {"channels": cfg.channels}, lambda: FSB(FSBConfig(channels=cfg.channels or FSBConfig.channels, scales=tuple(cfg.scales))))
    arch = model.cfg
    val_x = [(torch.from_numpy(fsb_input(*s.load()[:2]))[None], s.load()[2] > 0.5) for s in val]

    draw = FSBDraw(train, cfg.batch_size, cfg.crop)

    def loss(m: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, mask = batch
        return fsb_loss(m(x), x[:, :3], x[:, 3:6], mask, cfg.lambda1, cfg.lambda2)

    def validate(ema: torch.nn.Module) -> dict:
        scores, dev = [], model_device(ema)
        with torch.inference_mode():
            for x, gt in val_x:
                scores.append(miou(torch.sigmoid(ema(x.to(dev)))[0, 0].cpu().numpy() > 0.5, gt))
        return {"val_miou": float(np.mean(scores)) if scores else float("nan"), "val_n": len(scores)}

    task = Task(model, arch.to_dict(), draw, loss, validate, recipe="focusstack train fsb", init=cfg.init, init_steps=init_steps)
    loop = LoopConfig(
        out=cfg.out, steps=cfg.steps, lr=cfg.lr, val_every=cfg.val_every, minutes=cfg.minutes, seed=cfg.seed,
        export=cfg.export, show_progress=cfg.show_progress, threads=cfg.threads, device=cfg.device, workers=cfg.workers,
    )
    summary = run_training(task, loop)
    summary["train_samples"], summary["val_samples"] = len(train), len(val)
    summary["data"] = [str(d) for d in cfg.data]
    summary["config"] = {k: str(v) if isinstance(v, Path) else ([str(d) for d in v] if k == "data" else v) for k, v in cfg.__dict__.items()}
    return summary


def export_fsb_checkpoint(run: Path, folder: Path) -> int:
    """Export the EMA FSB of a run folder's checkpoint into ``folder`` (e.g. models/fsb)."""
    return export_checkpoint(run, folder, lambda d: FSB(FSBConfig.from_dict(d)), "focusstack train fsb")
