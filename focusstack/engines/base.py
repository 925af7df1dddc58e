"""The engine interface: what every fusion engine offers, and what its callers may rely on.

An engine turns one slab of registered frames into one image. It never reads or writes a
file: a caller that wants the intermediate maps (``--save-steps``) asks :meth:`Stepped.steps`
for them as data and writes them itself (``focusstack.io.steps``), the way focus-stack's
``Task_SaveImg`` does.

- ``fuse(frames, *, on_tile=None)``: ``K x (H, W, 3)`` float32 in [0, 1], one size ->
  ``(H, W, 3)`` float32 in [0, 1]. ``on_tile(done, total)`` reports progress (named for
  VAEEDOF's tiles; the decision engine reports its stages).
- ``name``, ``device``, ``precision``, ``precision_reason``: what ``--json`` reports.
- ``max_frames``: the most frames one ``fuse`` takes (the Fusion U-Net's 7), or None for any.
- ``fallbacks``: documented stand-ins used instead of trained networks, one sentence each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

#: ``on_tile(done, total)``: progress of one fusion.
Progress = Callable[[int, int], None]


@runtime_checkable
class Engine(Protocol):
    name: str
    device: str
    precision: str
    precision_reason: str
    max_frames: int | None
    fallbacks: Sequence[str]

    def fuse(self, frames: Sequence[np.ndarray], *, on_tile: Progress | None = None) -> np.ndarray: ...


class Steps(Protocol):
    """The intermediate maps of one fusion: ``fused`` ``(H, W, 3)`` float32 in [0, 1], ``info``
    (JSON-ready) and ``visualise()`` -> name -> ``(H, W)`` or ``(H, W, 3)`` float32 in [0, 1]."""

    fused: np.ndarray
    info: dict

    def visualise(self) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Stepped(Engine, Protocol):
    """An engine that can return its intermediate maps: ``steps(frames)`` is ``fuse`` that
    keeps them (``steps(frames).fused == fuse(frames)``). ``step_images``: every name
    ``visualise()`` may return (checked against the inputs before any work)."""

    step_images: tuple[str, ...]

    def steps(self, frames: Sequence[np.ndarray], *, on_tile: Progress | None = None) -> Steps: ...
