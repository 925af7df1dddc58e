"""The ``train`` jobs: a config in, a trained (and optionally exported) network out.

``train(task, config)`` runs one of the training tasks with its config dataclass (all three in
the torch-free :mod:`focusstack.training.tr_configs`: ``fusion``: ``TrainFusionConfig``;
``fsb``: ``TrainFSBConfig``; ``keb``: ``TrainKEBConfig``) on the one training loop
(:func:`focusstack.training.tr_loop.run_training`) and returns its summary (what ``--json``
prints). The configs' ``__post_init__`` and the loop check their inputs before any training
step; a run resumes from ``OUT/checkpoint`` (:mod:`focusstack.training.checkpoint`).

The CLI reaches this module through the lazy reference ``"focusstack.jobs.train:train"``
(it imports torch; ``focusstack train --help`` must not).
"""

from __future__ import annotations

from focusstack.errors import UsageError
from focusstack.training.fsb import train_fsb
from focusstack.training.fusion import train_fusion
from focusstack.training.keb import train_keb
from focusstack.training.tr_configs import TrainFSBConfig, TrainFusionConfig, TrainKEBConfig

#: task -> (config class, training function)
TASKS = {
    "fusion": (TrainFusionConfig, train_fusion),
    "fsb": (TrainFSBConfig, train_fsb),
    "keb": (TrainKEBConfig, train_keb),
}


def train(task: str, config: TrainFusionConfig | TrainFSBConfig | TrainKEBConfig) -> dict:
    """Train ``task`` (``fusion`` | ``fsb`` | ``keb``) with ``config``, an instance of that task's
    config class; the summary dict. :class:`UsageError` for an unknown task or a config of
    another task."""
    if task not in TASKS:
        raise UsageError(f"unknown training task {task!r}", expected=" | ".join(TASKS), actual=repr(task),
                         fix=f"use one of {', '.join(TASKS)}")
    cls, run = TASKS[task]
    if not isinstance(config, cls):
        raise UsageError(f"train {task} needs a {cls.__name__}", expected=cls.__name__, actual=type(config).__name__,
                         fix=f"build the config with focusstack.training.tr_configs.{cls.__name__}")
    return run(config)
