"""The ``render-dataset`` job: a :class:`~focusstack.rendering.config.RenderConfig` in, a
dataset folder out (``focusstack.rendering.dataset.render_dataset`` renders, checks the folder
and the config first, skips finished samples and writes every file atomically); the summary
dict is what ``--json`` prints. See docs/render-dataset.md."""

from __future__ import annotations

from pathlib import Path

from focusstack.rendering.config import RenderConfig
from focusstack.rendering.dataset import render_dataset as _render_dataset


def render_dataset(outdir: Path, config: RenderConfig) -> dict:
    """Render ``config``'s samples into ``outdir``; the run's summary (samples, rendered,
    skipped, train/val counts, seconds, manifest path)."""
    return _render_dataset(outdir, config)
