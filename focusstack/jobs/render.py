"""The ``render-dataset`` job: a :class:`~focusstack.rendering.config.RenderConfig` in, a
dataset folder out, a :class:`RenderDatasetResult` back.

:func:`focusstack.rendering.dataset.render_dataset` does the work: it checks the folder and the
config first (a manifest of other options, ``--engine blender`` without bpy, ``--device cuda``
without CUDA: nothing is written), skips finished samples, renders the rest and writes every
file atomically. Imports torch (through the renderer): the CLI reaches this module through the
lazy reference ``"focusstack.jobs.render:render_dataset"``. See docs/render-dataset.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from focusstack.rendering.config import RenderConfig
from focusstack.rendering.dataset import render_dataset as _render_dataset


@dataclass(frozen=True)
class RenderDatasetResult:
    """What one ``render-dataset`` run did.

    ``outdir``/``manifest``: the dataset folder and its ``manifest.json`` (as given, not resolved).
    ``samples``: samples in the dataset now (``rendered`` this run + ``skipped``, already there);
    ``train``/``val``: their split counts. ``seconds``: the run's wall time (3 decimals);
    ``seconds_per_rendered_sample``: ``None`` when nothing was rendered. ``resolution`` (px) and
    ``engine`` as configured; ``sources``: the source pools' summary (counts per split, or
    ``"procedural"``).
    """

    outdir: str
    manifest: str
    samples: int
    rendered: int
    skipped: int
    train: int
    val: int
    seconds: float
    seconds_per_rendered_sample: float | None
    resolution: int
    engine: str
    sources: dict

    def to_dict(self) -> dict:
        """JSON-ready dict, keys in field order: what ``render-dataset --json`` prints."""
        return asdict(self)


def render_dataset(outdir: str | os.PathLike[str], config: RenderConfig) -> RenderDatasetResult:
    """Render ``config.samples`` samples into ``outdir`` (resuming a run of the same options).

    Raises:
        UsageError: ``outdir`` is a file or holds a dataset of other options; ``--device cuda``
            without CUDA; ``--ray`` without the ``ray`` package.
        ConfigError: ``--engine blender`` without bpy.
        FileWriteError: a file could not be written (disk full, read-only, permissions).
    """
    return RenderDatasetResult(**_render_dataset(Path(outdir), config))
