"""Finding and loading the trained FSB and KEB (shipped in ``focusstack/models/fsb``, ``/keb``).

Each folder holds ``model.safetensors`` (metadata ``trained_steps`` > 0), ``config.json``
(architecture only) and ``SHA256SUMS``, written by ``focusstack train fsb|keb --export``; they
are loaded with :func:`focusstack.networks.weights.load_model_dir` (sums checked, strict load,
untrained weights refused). Folder order: the given folder, then ``$FOCUSSTACK_FSB_DIR`` /
``$FOCUSSTACK_KEB_DIR``, then the shipped ``focusstack/models/fsb`` / ``keb`` (package data,
:func:`focusstack.config.model_dir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from focusstack.config import FSB_DIR_ENV, KEB_DIR_ENV, MODEL_WEIGHTS_FILE, model_dir

if TYPE_CHECKING:
    from focusstack.networks.weights import LoadedModel

__all__ = ["FSB_DIR_ENV", "KEB_DIR_ENV", "default_dir", "load_fsb", "load_keb", "weights_present"]


def default_dir(kind: str) -> Path:
    """``$FOCUSSTACK_FSB_DIR`` / ``$FOCUSSTACK_KEB_DIR`` or the shipped ``focusstack/models/<kind>``
    (``kind``: ``fsb`` or ``keb``; see :func:`focusstack.config.model_dir`)."""
    return model_dir(kind)


def weights_present(folder: Path | None, kind: str) -> Path | None:
    """The folder that would be used for ``kind`` when it has a ``model.safetensors``, else None."""
    d = Path(folder) if folder is not None else default_dir(kind)
    return d if (d / MODEL_WEIGHTS_FILE).is_file() else None


# torch is imported only when a network is loaded: `focusstack --help` and the decision
# engine never pay for it (issue 17's start-up target).


def load_fsb(folder: Path | None = None) -> LoadedModel:
    from focusstack.networks.fsb import FSB, FSBConfig  # torch
    from focusstack.networks.weights import load_model_dir

    return load_model_dir(folder or default_dir("fsb"), lambda d: FSB(FSBConfig.from_dict(d)))


def load_keb(folder: Path | None = None) -> LoadedModel:
    from focusstack.networks.keb import KEB, KEBConfig  # torch
    from focusstack.networks.weights import load_model_dir

    return load_model_dir(folder or default_dir("keb"), lambda d: KEB(KEBConfig.from_dict(d)))
