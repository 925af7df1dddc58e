"""One optimisation step with an exponential moving average of the weights (every trainer)."""

from __future__ import annotations

import torch


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
