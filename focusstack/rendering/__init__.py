"""Synthetic multi-focus datasets (``focusstack render-dataset``).

The public entry point is :func:`render_dataset` with a :class:`RenderConfig`; the thin-lens
engine itself is :func:`focusstack.rendering.thinlens.render_scene` on a
:class:`focusstack.rendering.scene.Scene`. See docs/render-dataset.md.

Names are imported lazily so that ``import focusstack.rendering.config`` (the CLI's help) does
not import torch.
"""

from __future__ import annotations

from typing import Any

from focusstack.lazy import load

_EXPORTS = {
    "RenderConfig": "focusstack.rendering.config",
    "render_dataset": "focusstack.rendering.dataset",
    "render_sample": "focusstack.rendering.dataset",
    "Camera": "focusstack.rendering.scene",
    "Plane": "focusstack.rendering.scene",
    "Scene": "focusstack.rendering.scene",
    "RenderResult": "focusstack.rendering.thinlens",
    "render_scene": "focusstack.rendering.thinlens",
    "sample_scene": "focusstack.rendering.sampling",
    "build_pools": "focusstack.rendering.sampling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return load(f"{_EXPORTS[name]}:{name}")
    raise AttributeError(f"module 'focusstack.rendering' has no attribute {name!r}")
