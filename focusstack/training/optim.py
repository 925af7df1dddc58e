"""What every trainer shares: the learning-rate schedule, and one optimisation step with an
exponential moving average of the weights."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, lr: float, warmup: int, steps: int) -> float:
    """The learning rate at ``step``: linear warm-up over ``warmup`` steps to ``lr``, then a
    cosine decay to a tenth of it at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def step_with_ema(
    model: torch.nn.Module,
    ema: torch.nn.Module,
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    step: int,
    ema_decay: float,
    clip: float = 1.0,
) -> None:
    """Backpropagate the scalar ``loss``, clip the gradient norm to ``clip``, step ``opt``, then
    move ``ema`` towards ``model`` with decay ``min(ema_decay, (1 + step) / (10 + step))`` (the
    average warms up over the first steps instead of starting from the initial weights)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    d = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - d)
