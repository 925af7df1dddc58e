"""``focusstack train fusion``: train the Fusion U-Net on cached TAEF2 latents.

Recipe (VAEEDOF section 3, adapted to a CPU budget): AdamW, EMA of the weights (used for
validation and shipped), L1 loss on latents plus an optional pixel loss (``pixel_weight``: L1
between the frozen TAEF2 decoder's images of the predicted and of the GT latent, on the first
``pixel_patches`` patches of each batch, ``pixel_crop`` latent px square; gradients flow through
the frozen decoder into the U-Net only), bf16 autocast with channels_last on CPUs that
support it. Checkpoints are safetensors plus a JSON state, written every ``ckpt_every`` steps
and on exit, so a run resumes where it stopped (also after Ctrl-C).
"""

from __future__ import annotations

import copy
import json
import time
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
from focusstack.networks.weights import load_fusion, load_vae, resolve_vae_dir, save_model_dir
from focusstack.progress import progress_bar
from focusstack.training.data import LatentPatches, cache_latents, list_datasets, list_samples, read_rgb
from focusstack.training.checkpoint import load_checkpoint, save_checkpoint
from focusstack.training.optim import step_with_ema, warmup_cosine


@dataclass(frozen=True)
class TrainFusionConfig:
    #: Rendered datasets, trained on together (validation uses the first one's val split); a
    #: single path is accepted and stored as a 1-tuple.
    data: tuple[Path, ...]
    out: Path
    steps: int = 4000
    batch_size: int = 8
    crop: int = 32  # latent px (x8 image px)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    ema_decay: float = 0.999
    ckpt_every: int = 250
    val_every: int = 500
    val_samples: int = 16
    max_train_samples: int = 0  # 0: every training sample of the dataset
    #: Start from an exported model folder (e.g. models/fusion) instead of random weights, when
    #: the run has no checkpoint yet: how a later session continues a shipped model.
    init: Path | None = None
    seed: int = 0
    channels: tuple[int, int, int] = (64, 128, 192)
    head: str = "select_residual"
    vae_weights: Path | None = None
    export: Path | None = None  # models/fusion: written at the end from the EMA weights
    show_progress: bool = True
    threads: int = 0  # 0: torch default
    #: Optional pixel loss through the frozen decoder (0: latent L1 only), on the first
    #: ``pixel_patches`` patches of a batch, a centred ``pixel_crop`` latent px window of each.
    pixel_weight: float = 0.0
    pixel_patches: int = 2
    pixel_crop: int = 16
    #: Training arithmetic. fp32 is faster than bf16 autocast for these small latent patches
    #: on this CPU (0.40 s against 0.69 s a step, measured); the encoder still runs bf16.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        data = (self.data,) if isinstance(self.data, (str, Path)) else self.data
        object.__setattr__(self, "data", tuple(Path(d) for d in data))


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


def train_fusion(cfg: TrainFusionConfig) -> dict:
    """Train (or resume) and return a summary. See the module docstring."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
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

    torch.manual_seed(cfg.seed)
    init_steps = 0
    if cfg.init is not None:
        loaded = load_fusion(cfg.init, require_trained=False)
        model, arch = loaded.model.requires_grad_(True), loaded.model.cfg
        init_steps = int(loaded.metadata.get("trained_steps", "0") or 0)
    else:
        arch = FusionUNetConfig(channels=cfg.channels, head=cfg.head)
        model = FusionUNet(arch)
    arch.save(out / "config.json")
    model = model.train().to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = LatentPatches(train_files, arch.frames, cfg.crop, cfg.seed)
    step, log = 0, []
    ckpt = out / "checkpoint"
    resumed = load_checkpoint(ckpt, model, ema, opt)
    if resumed is not None:
        data.gen.set_state(resumed.gen_state)
        step, log = resumed.step, resumed.log

    def lr_at(s: int) -> float:
        return warmup_cosine(s, cfg.lr, cfg.warmup, cfg.steps)

    t_start, losses = time.perf_counter(), []
    wall_before = log[-1]["wall_s"] if log else 0.0
    try:
        with progress_bar("training", enabled=cfg.show_progress) as upd:
            while step < cfg.steps:
                x, y = data.draw(cfg.batch_size)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    pred = model(x.flatten(1, 2).contiguous(memory_format=torch.channels_last))
                loss = F.l1_loss(pred.float(), y)
                if cfg.pixel_weight > 0:
                    loss = loss + cfg.pixel_weight * pixel_loss(vae, pred.float(), y, cfg.pixel_patches, cfg.pixel_crop)
                step_with_ema(model, ema, opt, loss, step, cfg.ema_decay)
                step += 1
                losses.append(float(loss.detach()))
                upd(step, cfg.steps)
                if step % cfg.val_every == 0 or step == cfg.steps:
                    metrics = evaluate(ema, backend, val_refs, val_files, dtype)
                    entry = {"step": step, "loss": float(np.mean(losses[-100:])), "wall_s": wall_before + time.perf_counter() - t_start} | metrics
                    log.append(entry)
                    (out / "log.jsonl").open("a").write(json.dumps(entry) + "\n")
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    if not log or log[-1]["step"] != step:
                        log.append({"step": step, "loss": float(np.mean(losses[-100:])), "wall_s": wall_before + time.perf_counter() - t_start})
                    save_checkpoint(ckpt, step, model, ema, opt, data.gen.get_state(), log)
    except KeyboardInterrupt:
        save_checkpoint(ckpt, step, model, ema, opt, data.gen.get_state(), log)
        raise
    summary = {
        "steps": step,
        "train_samples": len(train_files),
        "val_samples": len(val_files),
        "wall_s": round(wall_before + time.perf_counter() - t_start, 1),
        "last": log[-1] if log else {},
        "config": {k: str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "data" else v for k, v in asdict(cfg).items()},
    }
    if cfg.export is not None:
        save_model_dir(ema, arch.to_dict(), Path(cfg.export), metadata={"trained_steps": init_steps + step, "recipe": "focusstack train fusion"})
        (Path(cfg.export) / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
