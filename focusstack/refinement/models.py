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

from focusstack.config import FSB_DIR_ENV, KEB_DIR_ENV, MODEL_WEIGHTS_FILE, model_dir
from focusstack.errors import WeightsError
from focusstack.networks.fsb import FSB, FSBConfig  # torch: this module is imported only where networks run
from focusstack.networks.keb import KEB, KEBConfig
from focusstack.networks.weights import LoadedModel, load_model_dir
from focusstack.refinement.refine import RefineConfig

__all__ = ["FSB_DIR_ENV", "KEB_DIR_ENV", "default_dir", "load_fsb", "load_keb", "load_refine_networks", "weights_present"]


def default_dir(kind: str) -> Path:
    """``$FOCUSSTACK_FSB_DIR`` / ``$FOCUSSTACK_KEB_DIR`` or the shipped ``focusstack/models/<kind>``
    (``kind``: ``fsb`` or ``keb``; see :func:`focusstack.config.model_dir`)."""
    return model_dir(kind)


def weights_present(folder: Path | None, kind: str) -> Path | None:
    """The folder that would be used for ``kind`` when it has a ``model.safetensors``, else None."""
    d = Path(folder) if folder is not None else default_dir(kind)
    return d if (d / MODEL_WEIGHTS_FILE).is_file() else None


def load_fsb(folder: Path | None = None) -> LoadedModel:
    return load_model_dir(folder or default_dir("fsb"), lambda d: FSB(FSBConfig.from_dict(d)))


def load_keb(folder: Path | None = None) -> LoadedModel:
    return load_model_dir(folder or default_dir("keb"), lambda d: KEB(KEBConfig.from_dict(d)))


def load_refine_networks(config: RefineConfig) -> tuple[object | None, object | None, dict]:
    """``(fsb, keb, used)``: the trained FSB and KEB that ``config``'s mask and sigma sources ask
    for (None for a fallback), and ``used`` = the folders loaded. Raises WeightsError when a
    source demands weights that do not exist."""

    def one(kind: str, source: str, folder: Path | None, loader, option: str, fallback: str):  # noqa: ANN001, ANN202
        """The ``kind`` network when ``source`` is auto or ``kind``; an error when demanded but absent."""
        if source not in ("auto", kind):
            return None, None
        found = weights_present(folder, kind)
        if found is None and (source == kind or folder is not None):
            raise WeightsError(
                f"no trained {kind.upper()} weights (model.safetensors) found",
                fix=f"train them with `focusstack train {kind} --export models/{kind}`, pass --{kind}-weights DIR, "
                f"or use {option} {fallback}",
            )
        return (loader(found).model, str(found)) if found is not None else (None, None)

    fsb, fsb_dir = one("fsb", config.mask_source, config.fsb_weights, load_fsb, "--mask-source", "decision")
    keb, keb_dir = one("keb", config.sigma_source, config.keb_weights, load_keb, "--sigma-source", "classical")
    return fsb, keb, {"fsb": fsb_dir, "keb": keb_dir}
