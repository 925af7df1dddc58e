"""``focusstack train fusion``: train the Fusion U-Net on cached TAEF2 latents.

Recipe (VAEEDOF section 3, adapted to a CPU budget): AdamW, EMA of the weights (used for
validation and shipped), L1 loss on latents plus an optional pixel loss (``pixel_weight``: L1
between the frozen TAEF2 decoder's images of the predicted and of the GT latent, on the first
``pixel_patches`` patches of each batch, ``pixel_crop`` latent px square; gradients flow through
the frozen decoder into the U-Net only), bf16 autocast with channels_last on CPUs that
support it. The Fusion U-Net is a task of the one training loop
(:func:`focusstack.training.tr_loop.run_training`): checkpoints every ``ckpt_every`` steps and
on exit, so a run resumes where it stopped (also after Ctrl-C); its latent patches come from a
torch generator whose state the checkpoint keeps, so a resumed run repeats the uninterrupted
one bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from focusstack.backends.torch_backend import TorchBackend, cpu_has_fast_bf16
from focusstack.io.writers import write_image
from focusstack.metrics import psnr, ssim
from focusstack.networks.fusion_unet import FusionUNet, FusionUNetConfig
from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir
from focusstack.progress import progress_bar
from focusstack.training.data import LatentPatches, cache_latents, list_datasets, list_samples, read_rgb
from focusstack.training.tr_configs import TrainFusionConfig  # noqa: F401  (re-exported)
from focusstack.training.tr_loop import LoopConfig, Task, run_training, warm_start


def evaluate(ema: FusionUNet, vae_backend: TorchBackend, refs, files, dtype, write: Path | None = None) -> dict:  # noqa: ANN001
    """PSNR/SSIM of the EMA model on validation samples, with the VAE ceiling and baselines.

    ``write``: also save, per scored sample, 16-bit PNGs ``<write>/<method>/<sample id>.png``
    for the methods ``fusion``, ``vae_ceiling``, ``mean_of_frames`` and ``best_frame`` (the frame
    closest to the GT in PSNR), so that ``focusstack eval`` can score them on every metric."""
    if not refs:
        return {"n": 0}
    rows, trivial = [], 0
    ema.eval()
    for ref, f in zip(refs, files):
        d = load_file(str(f))
        z, zgt = d["frames"].float(), d["gt"].float()
        k = z.shape[0]
        idx = torch.arange(ema.cfg.frames) % k
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            fused = ema(z[idx][None]).float()
        pred = vae_backend.decode(fused.numpy())[0].transpose(1, 2, 0)
        ceil = vae_backend.decode(zgt[None].numpy())[0].transpose(1, 2, 0)
        gt = read_rgb(ref.folder / "gt.png")[: pred.shape[0], : pred.shape[1]]
        frames = [read_rgb(p)[: pred.shape[0], : pred.shape[1]] for p in ref.frame_paths()]
        mean = np.mean(frames, axis=0)
        scores = [psnr(fr, gt) for fr in frames]
        best = max(scores)
        if not np.isfinite(best):
            trivial += 1  # a frame already equals the GT (nothing out of focus): not scored
            continue
        if write is not None:
            best_frame = frames[scores.index(best)]
            for name, img in (("fusion", pred), ("vae_ceiling", ceil), ("mean_of_frames", mean), ("best_frame", best_frame)):
                (Path(write) / name).mkdir(parents=True, exist_ok=True)
                write_image(Path(write) / name / f"{ref.id}.png", img, bit_depth=16, overwrite=True)
        rows.append(
            {
                "psnr": psnr(pred, gt),
                "ssim": ssim(pred, gt),
                "ceiling_psnr": psnr(ceil, gt),
                "ceiling_ssim": ssim(ceil, gt),
                "mean_psnr": psnr(mean, gt),
                "mean_ssim": ssim(mean, gt),
                "best_frame_psnr": best,
                "latent_l1": float((fused[0] - zgt).abs().mean()),
            }
        )
    ema.train()
    if not rows:
        return {"n": 0, "trivial": trivial}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows), "trivial": trivial}


def pixel_loss(vae, pred: torch.Tensor, target: torch.Tensor, patches: int, crop: int) -> torch.Tensor:  # noqa: ANN001
    """L1 between the frozen decoder's images of ``pred`` and ``target`` latents, both
    ``(B, C, h, w)`` float32 (any range), on the first ``patches`` items and a centred
    ``crop x crop`` latent window (``8 crop`` px images in [0, 1]). Differentiable in ``pred``."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must be one (B, C, h, w) shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    n = max(1, min(patches, pred.shape[0]))
    h, w = pred.shape[-2:]
    c = min(crop, h, w)
    t, l = (h - c) // 2, (w - c) // 2
    p, g = pred[:n, :, t : t + c, l : l + c], target[:n, :, t : t + c, l : l + c]
    with torch.no_grad():
        img_gt = vae.decoder(g).clamp(0, 1)
    return F.l1_loss(vae.decoder(p).clamp(0, 1), img_gt)


@dataclass(frozen=True)
class FusionDraw:
    """``draw(rng)`` of the training loop: ``batch_size`` latent patches from ``data``, which
    draws from its own torch generator (the loop's ``rng`` is not used; the generator's state is
    the task's ``rng_state``, kept in the checkpoint)."""

    data: LatentPatches
    batch_size: int

    def __call__(self, rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.draw(self.batch_size)


def _summary_config(cfg: TrainFusionConfig) -> dict:
    """``cfg`` as JSON-ready values (paths as strings), for the summary."""
    return {k: str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "data" else v for k, v in asdict(cfg).items()}


def train_fusion(cfg: TrainFusionConfig) -> dict:
    """Train (or resume) and return a summary: the Fusion U-Net as a task of the one training
    loop (:func:`focusstack.training.tr_loop.run_training`). See the module docstring."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # before the encoder runs, not only in the loop
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    vae = load_vae(resolve_vae_dir(cfg.vae_weights))
    backend = TorchBackend(vae, None, device="cpu", precision="bf16" if cpu_has_fast_bf16() else "fp32")

    train_refs = list_datasets(cfg.data, "train")
    if cfg.max_train_samples:
        train_refs = train_refs[: cfg.max_train_samples]
    val_refs = list_samples(cfg.data[0], "val")[: cfg.val_samples]
    with progress_bar("encoding latents", enabled=cfg.show_progress) as upd:
        train_files = cache_latents(train_refs, out / "latents", backend, on_sample=upd)
        val_files = cache_latents(val_refs, out / "latents", backend, on_sample=upd)

    torch.manual_seed(cfg.seed)  # the fresh model's initial weights
    model, init_steps = warm_start(cfg.init, lambda d: load_fusion(d, require_trained=False), {},
                                   lambda: FusionUNet(FusionUNetConfig(channels=cfg.channels, head=cfg.head)))
    arch = model.cfg
    data = LatentPatches(train_files, arch.frames, cfg.crop, cfg.seed)

    def loss(m: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, y = batch
        y = y.contiguous()  # the loop hands 4-D tensors over channels_last; the L1 is taken in the plain layout
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            pred = m(x.flatten(1, 2).contiguous(memory_format=torch.channels_last))
        total = F.l1_loss(pred.float(), y)
        if cfg.pixel_weight > 0:
            total = total + cfg.pixel_weight * pixel_loss(vae, pred.float(), y, cfg.pixel_patches, cfg.pixel_crop)
        return total, {}

    def summarize(s: dict) -> dict:
        return {
            "steps": s["steps"], "train_samples": len(train_files), "val_samples": len(val_files),
            "wall_s": s["wall_s"], "last": s["last"], "config": _summary_config(cfg),
        }

    task = Task(
        model, arch.to_dict(), FusionDraw(data, cfg.batch_size), loss,
        lambda ema: evaluate(ema, backend, val_refs, val_files, dtype), recipe="focusstack train fusion",
        init=cfg.init, init_steps=init_steps, rng_state=data.gen.get_state, set_rng_state=data.gen.set_state,
        log_window=100, wall_digits=None, summarize=summarize,
    )
    loop = LoopConfig(
        out=out, steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup=cfg.warmup, ema_decay=cfg.ema_decay,
        ckpt_every=cfg.ckpt_every, val_every=cfg.val_every, seed=cfg.seed, export=cfg.export,
        show_progress=cfg.show_progress, threads=cfg.threads, device="cpu", workers=0,
    )
    return run_training(task, loop)
