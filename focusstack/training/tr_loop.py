"""The one training loop: ``focusstack train fusion``, ``train fsb`` and ``train keb`` are tasks of it.

AdamW with a linear warm-up and a cosine decay to a tenth of the peak rate, gradient clipping,
an EMA of the weights (validated and exported), checkpoints (:mod:`focusstack.training.checkpoint`)
every ``ckpt_every`` steps, on a time limit and on Ctrl-C, so a run resumes where it stopped.
The task (Fusion U-Net, FSB or KEB) supplies the model, the batches, the loss and the
validation through :class:`Task`.

Batches: by default ``draw(rng)`` draws from the loop's numpy stream (seeded with ``seed``; a
resumed run continues on a fresh reproducible stream ``(seed, step)``). A task whose batches
carry their own random state (the Fusion U-Net's latent patches, a torch generator) hands the
loop ``rng_state``/``set_rng_state``: the state goes into every checkpoint and comes back on
resume, so a resumed run repeats the uninterrupted one bit for bit.

Devices: ``device="cuda"`` (or ``"auto"``: CUDA when present) trains on the GPU with TF32
matrix products; batches are still built on the CPU. ``workers=N`` builds them in N worker
processes (a GPU step is much faster than one process can augment crops); each worker draws
from its own seeded stream ``(seed, step at start, worker)``, so a run is reproducible for a
given worker count but differs from a ``workers=0`` run, which draws every batch in the
training process from one stream.

Warm start (``--init DIR``, :func:`warm_start`): the run starts from an exported model folder
(e.g. ``models/fsb``) whose ``config.json`` gives the architecture; exports count their
``trained_steps`` on from the folder's. A run folder that already holds a checkpoint resumes
from it instead (``init.json`` there records where the run first started from).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from focusstack.backends.device import resolve_device as resolve_device_name
from focusstack.config import TRAIN_DEVICES  # one tuple for the CLI choice and this check
from focusstack.errors import ConfigError, UsageError
from focusstack.networks.weights import LoadedModel, save_model_dir
from focusstack.progress import progress_bar
from focusstack.training.checkpoint import load_checkpoint, save_checkpoint
from focusstack.training.optim import step_with_ema, warmup_cosine


@dataclass
class Task:
    """What one network's training needs: a model, its architecture dict, batches, a loss and
    a validation (``validate(ema) -> dict`` of floats; the loop puts ``ema`` in eval mode first).

    ``loss(model, batch) -> (scalar loss, {name: float})``: the batch as ``draw`` returned it,
    its tensors moved to the training device and its 4-D ``(B, C, H, W)`` ones channels_last."""

    model: torch.nn.Module
    arch: dict
    draw: Callable[[np.random.Generator], tuple]  # picklable (a top-level callable) for workers > 0
    loss: Callable[[torch.nn.Module, tuple], tuple[torch.Tensor, dict]]
    validate: Callable[[torch.nn.Module], dict]
    recipe: str
    #: Warm start: the exported folder the model's weights came from, and its ``trained_steps``
    #: (exports count on from there). None / 0 for a run from random weights.
    init: Path | None = None
    init_steps: int = 0
    #: Batches with their own random state (see the module docstring): ``rng_state()`` -> a
    #: tensor saved in each checkpoint, ``set_rng_state(t)`` restores it on resume. None: the
    #: loop's numpy stream (the checkpoint's generator slot holds ``zeros(1)``).
    rng_state: Callable[[], torch.Tensor] | None = None
    set_rng_state: Callable[[torch.Tensor], None] | None = None
    #: A log entry's ``loss``: the mean of this many last step losses; its ``wall_s`` rounded to
    #: ``wall_digits`` decimals (None: not rounded).
    log_window: int = 50
    wall_digits: int | None = 1
    #: The summary as this task reports it (``summarize(loop summary) -> dict``), returned and
    #: written to ``train_summary.json`` on export; None: the loop's summary as it is.
    summarize: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class LoopConfig:
    out: Path
    steps: int
    lr: float
    weight_decay: float = 1e-4
    warmup: int = 50
    ema_decay: float = 0.995
    ckpt_every: int = 100
    val_every: int = 200
    minutes: float = 0.0  # stop (checkpoint, export) after this much wall time in this call; 0: no limit
    seed: int = 0
    export: Path | None = None
    show_progress: bool = True
    threads: int = 1
    device: str = "cpu"  # cpu | cuda | auto
    workers: int = 0  # batch-building processes; 0: in this process
    extra: dict | None = None  # recorded in the summary and model metadata


def resolve_device(name: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``auto`` -> a torch device (``auto``: resolved by
    :func:`focusstack.backends.device.resolve_device`); :class:`UsageError` for an unknown name
    or for ``cuda`` without a CUDA device (the training commands' messages, exit code 2)."""
    if name not in TRAIN_DEVICES:
        raise UsageError(f"unknown --device {name!r}", expected=" | ".join(TRAIN_DEVICES), actual=name, fix="pass --device cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA device is available",
            expected="a CUDA build of torch and a GPU", actual=f"torch {torch.__version__}", fix="pass --device cpu",
        )
    return torch.device(resolve_device_name(name))


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless batches from ``draw(rng)``, one seeded stream per worker process."""

    def __init__(self, draw: Callable[[np.random.Generator], tuple], seed: int, step: int) -> None:
        self.draw, self.seed, self.step = draw, seed, step

    def __iter__(self):  # noqa: ANN204
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.step, info.id if info is not None else 0, 1])
        while True:
            yield self.draw(rng)


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def batch_stream(draw: Callable[[np.random.Generator], tuple], rng: np.random.Generator, cfg: LoopConfig, step: int, pin: bool):  # noqa: ANN201
    """An iterator of batches: drawn here from ``rng`` (``workers=0``) or by worker processes."""
    if cfg.workers <= 0:
        while True:
            yield draw(rng)
    import multiprocessing as mp

    # not fork: a run with fork-started workers hung on a 16-core GPU machine (a forked child of
    # a process whose OpenCV/OpenMP thread pools run can deadlock; the cause was not isolated),
    # the same run with forkserver did not. ``draw`` must therefore be picklable.
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    loader = torch.utils.data.DataLoader(
        _BatchStream(draw, cfg.seed, step), batch_size=None, num_workers=cfg.workers, pin_memory=pin,
        prefetch_factor=4, worker_init_fn=_worker_init, multiprocessing_context=method,
    )
    yield from loader


def to_device(batch: tuple, device: torch.device) -> tuple:
    """Move the tensors of a batch tuple to ``device`` (other items unchanged); image batches
    ``(B, C, H, W)`` go channels_last, the layout the model is trained in (on this project's
    CPUs a 3x3 convolution's forward and backward run about 1.8x faster in it, measured on the
    32-channel FSB)."""
    def move(t: object) -> object:
        if not isinstance(t, torch.Tensor):
            return t
        t = t if device.type == "cpu" else t.to(device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t

    return tuple(move(t) for t in batch)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (validation moves its inputs there)."""
    return next(model.parameters()).device


def warm_start(
    init: Path | None, load: Callable[[Path], LoadedModel], requested: dict, fresh: Callable[[], torch.nn.Module] | None = None
) -> tuple[torch.nn.Module, int]:
    """The model a run starts from, and the ``trained_steps`` it already has: ``fresh()`` and 0
    without ``init``, else the trainable model of the exported folder ``init`` (``--init``).

    With ``init`` the architecture is the folder's ``config.json``; ``requested`` holds the
    architecture options the user gave (``{"channels": 32}``, None values skipped): one that
    differs from the folder's is a :class:`ConfigError` (never a silently different network)."""
    if init is None:
        if fresh is None:
            raise ValueError("warm_start needs init or fresh")
        return fresh(), 0
    loaded = load(Path(init))
    arch = loaded.model.cfg.to_dict()
    for name, value in requested.items():
        if value is not None and arch.get(name) != value:
            raise ConfigError(
                f"--{name} {value} differs from the --init model's {name} ({init / 'config.json'})",
                expected=str(arch.get(name)), actual=str(value),
                fix=f"drop --{name} (--init gives the architecture), or train from scratch without --init",
            )
    return loaded.model.requires_grad_(True).train(), int(loaded.metadata.get("trained_steps", "0") or 0)


def _read_init(run: Path) -> dict | None:
    """``run/init.json`` (where a warm-started run began), or None for a run from scratch."""
    f = Path(run) / "init.json"
    return json.loads(f.read_text()) if f.is_file() else None


def run_training(task: Task, cfg: LoopConfig) -> dict:
    """Train (or resume from ``out/checkpoint``) and return a summary; see the module docstring."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.workers < 0:
        raise UsageError("--workers must be 0 or more", expected="an integer >= 0", actual=str(cfg.workers), fix="pass --workers 0")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    arch_file = out / "config.json"
    if (ckpt / "state.json").is_file() and arch_file.is_file():
        saved = json.loads(arch_file.read_text())
        if saved != json.loads(json.dumps(task.arch)):
            raise ConfigError(
                f"{out} holds a checkpoint of another architecture",
                expected=json.dumps(saved, sort_keys=True),
                actual=json.dumps(task.arch, sort_keys=True, default=str),
                fix="resume with the run's original options (e.g. --channels), or choose a new --out folder",
            )
    else:
        arch_file.write_text(json.dumps(task.arch, indent=2) + "\n")
    if task.init is not None and not (ckpt / "state.json").is_file():
        (out / "init.json").write_text(json.dumps({"from": str(task.init), "trained_steps": task.init_steps}) + "\n")
    init = _read_init(out)
    torch.manual_seed(cfg.seed)
    model = task.model.to(device).to(memory_format=torch.channels_last).train()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    step, log = 0, []
    resumed = load_checkpoint(ckpt, model, ema, opt)
    if resumed is not None:
        step, log = resumed.step, resumed.log
        if task.set_rng_state is not None:
            task.set_rng_state(resumed.gen_state)  # the task's own stream, where it stopped
        rng = np.random.default_rng([cfg.seed, step])  # a fresh but reproducible stream after resume

    def lr_at(s: int) -> float:
        return warmup_cosine(s, cfg.lr, cfg.warmup, cfg.steps)

    t0 = time.perf_counter()
    wall_before = log[-1]["wall_s"] if log else 0.0
    losses: list[float] = []
    parts: dict[str, list[float]] = {}
    stopped_on_time = False

    def entry() -> dict:
        wall, n = wall_before + time.perf_counter() - t0, task.log_window
        e = {"step": step, "loss": float(np.mean(losses[-n:])) if losses else None, "wall_s": wall if task.wall_digits is None else round(wall, task.wall_digits)}
        e |= {k: float(np.mean(v[-n:])) for k, v in parts.items()}
        return e

    def checkpoint() -> None:
        save_checkpoint(ckpt, step, model, ema, opt, torch.zeros(1) if task.rng_state is None else task.rng_state(), log)

    batches = batch_stream(task.draw, rng, cfg, step, pin=device.type == "cuda")
    try:
        with progress_bar("training", enabled=cfg.show_progress) as upd:
            while step < cfg.steps:
                batch = to_device(next(batches), device)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                loss, info = task.loss(model, batch)
                step_with_ema(model, ema, opt, loss, step, cfg.ema_decay)
                step += 1
                losses.append(float(loss.detach()))
                for k, v in info.items():
                    parts.setdefault(k, []).append(v)
                upd(step, cfg.steps)
                if step % cfg.val_every == 0 or step == cfg.steps:
                    ema.eval()
                    e = entry() | task.validate(ema)
                    log.append(e)
                    with (out / "log.jsonl").open("a") as fh:
                        fh.write(json.dumps(e) + "\n")
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    if not log or log[-1]["step"] != step:
                        log.append(entry())
                    checkpoint()
                if cfg.minutes and time.perf_counter() - t0 > cfg.minutes * 60:
                    stopped_on_time = True
                    break
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        batches.close()  # stops the worker processes, if any
    if stopped_on_time:
        ema.eval()
        e = entry() | task.validate(ema)
        log.append(e)
        with (out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(e | {"stopped_on_time": True}) + "\n")
        checkpoint()
    summary = {
        "steps": step,
        "target_steps": cfg.steps,
        "stopped_on_time": stopped_on_time,
        "wall_s": round(wall_before + time.perf_counter() - t0, 1),
        "last": log[-1] if log else {},
        "recipe": task.recipe,
        "init": init,
        "loop": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
    }
    if task.summarize is not None:
        summary = task.summarize(summary)
    if cfg.export is not None:
        export_model(ema.cpu(), task.arch, Path(cfg.export), (init["trained_steps"] if init else 0) + step, summary, task.recipe)
    return summary


def export_model(model: torch.nn.Module, arch: dict, folder: Path, steps: int, summary: dict, recipe: str | None = None) -> None:
    """``model.safetensors`` (metadata ``trained_steps`` and ``recipe``: ``recipe``, or else the
    summary's), ``config.json``, ``SHA256SUMS`` and ``train_summary.json`` into ``folder``."""
    save_model_dir(model, arch, folder, metadata={"trained_steps": steps, "recipe": summary.get("recipe", "") if recipe is None else recipe})
    (folder / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def export_checkpoint(run: Path, folder: Path, build: Callable[[dict], torch.nn.Module], recipe: str) -> int:
    """Export the EMA weights of ``run/checkpoint`` (a run still going, or stopped) into
    ``folder`` like ``--export`` does; returns the checkpoint's step."""
    run = Path(run)
    arch = json.loads((run / "config.json").read_text())
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    model = build(arch)
    model.load_state_dict(load_file(str(run / "checkpoint" / "ema.safetensors")))
    last = state["log"][-1] if state["log"] else {}
    init = _read_init(run)
    steps = int(state["step"]) + (init["trained_steps"] if init else 0)
    summary = {"steps": state["step"], "init": init, "wall_s": last.get("wall_s"), "last": last, "recipe": recipe, "exported_from": str(run / "checkpoint")}
    export_model(model.eval(), arch, Path(folder), steps, summary)
    return int(state["step"])
