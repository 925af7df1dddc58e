"""Training checkpoints: one folder (``OUT/checkpoint``) with the model, its EMA, the optimizer
state (safetensors, with the batch generator's state as ``__rng__``) and ``state.json`` (step,
optimizer groups, the log). Every training loop saves and resumes through these functions; a
checkpoint is replaced file by file from a ``.tmp`` folder, so a crash leaves the last complete
one readable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["Resumed", "flatten_optimizer", "load_checkpoint", "save_checkpoint", "unflatten_optimizer"]


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as flat tensors (``"<param id>.<key>"``) plus its param groups."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Load what :func:`flatten_optimizer` gave back into ``opt``."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, step: int, model, ema, opt, gen_state: torch.Tensor, log: list) -> None:  # noqa: ANN001
    """Write the checkpoint of ``step`` into ``folder`` (created), replacing the previous one."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".tmp"
    tmp.mkdir(exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    ot, ometa = flatten_optimizer(opt)
    ot["__rng__"] = gen_state
    save_file({k: v.detach().cpu().contiguous() for k, v in ot.items()}, str(tmp / "optim.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "optim": ometa, "log": log}, indent=1))
    for name in ("model.safetensors", "ema.safetensors", "optim.safetensors", "state.json"):
        (tmp / name).replace(folder / name)


@dataclass
class Resumed:
    """What :func:`load_checkpoint` restored: the step, the log and the generator state saved."""

    step: int
    log: list
    gen_state: torch.Tensor | None


def load_checkpoint(folder: Path, model, ema, opt) -> Resumed | None:  # noqa: ANN001
    """Restore ``model``, ``ema`` and ``opt`` from ``folder``; None when it holds no checkpoint."""
    if not (folder / "state.json").is_file():
        return None
    state = json.loads((folder / "state.json").read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
    ot = load_file(str(folder / "optim.safetensors"))
    gen_state = ot.pop("__rng__", None)
    unflatten_optimizer(opt, ot, state["optim"])
    return Resumed(state["step"], state["log"], gen_state)
