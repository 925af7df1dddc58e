"""The ``train`` jobs: a config in, a trained (and optionally exported) network out.

``train(task, config)`` runs one of the training tasks with its config dataclass
(``fusion``: ``training.fusion.TrainFusionConfig``; ``fsb``/``keb``:
``training.tr_configs.TrainFSBConfig``/``TrainKEBConfig``) and returns its summary (what
``--json`` prints). The configs' ``__post_init__`` and the loops check their inputs before any
training step; a run resumes from ``OUT/checkpoint`` (``focusstack.training.checkpoint``).
"""

from __future__ import annotations

from focusstack.errors import UsageError
from focusstack.training.fsb import train_fsb
from focusstack.training.fusion import TrainFusionConfig, train_fusion
from focusstack.training.keb import train_keb
from focusstack.training.tr_configs import TrainFSBConfig, TrainKEBConfig

#: task -> (config class, training function)
TASKS = {
    "fusion": (TrainFusionConfig, train_fusion),
    "fsb": (TrainFSBConfig, train_fsb),
    "keb": (TrainKEBConfig, train_keb),
}


def train(task: str, options: dict) -> dict:
    """Build ``task``'s config from ``options`` (its field names) and train; the summary dict."""
    if task not in TASKS:
        raise UsageError(f"unknown training task {task!r}", expected=" | ".join(TASKS), actual=repr(task),
                         fix=f"use one of {', '.join(TASKS)}")
    cls, run = TASKS[task]
    return run(cls(**options))
