"""``--save-steps``: an engine's intermediate maps written as a folder of 16-bit PNGs plus
``info.json``, all or none. The engine returns the maps as data (``focusstack.engines.base.
Steps``); the job writes them here, so no engine touches a file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from focusstack.errors import FileWriteError, OutputExistsError
from focusstack.io.writers import check_output, encode_image, write_files


class Steps(Protocol):
    """What :func:`write_steps` needs: ``visualise()`` and a JSON-ready ``info``."""

    info: dict

    def visualise(self) -> dict[str, np.ndarray]: ...


def _json_value(v: object) -> object:
    """numpy scalars and arrays as JSON numbers and lists (a box was once written as strings:
    ``[0, "87", "339", 510]``); anything else as its string."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def step_files(names: Iterable[str]) -> tuple[str, ...]:
    """Every file a steps folder may get: ``<name>.png`` for each image name, and ``info.json``."""
    return tuple(f"{n}.png" for n in names) + ("info.json",)


def check_steps_protected(folder: Path, names: Iterable[str], protected: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse a steps folder where a step file (``<name>.png`` for ``names``, ``info.json``) would replace one of
    ``protected`` (an input frame): ``--save-steps`` into the input folder is fine, writing over
    a frame is not, not even with ``--overwrite``."""
    folder = Path(folder)
    files = step_files(names)
    targets = {(folder / n).resolve(): folder / n for n in files}
    for item in protected:
        hit = targets.get(Path(item).resolve())
        if hit is not None:
            raise OutputExistsError(
                f"--save-steps {folder}: the step file {hit.name} would replace the input frame {item}",
                expected="a --save-steps folder without input frames named like a step file "
                f"({', '.join(files)})",
                actual=str(item),
                fix="choose another --save-steps folder (focusstack never overwrites its inputs, "
                "not even with --overwrite)",
            )


def write_steps(steps: Steps, folder: Path, *, protected: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Write ``steps.visualise()`` (name -> ``(H, W)`` or ``(H, W, 3)`` float32 in [0, 1]) as 16-bit PNGs (``<name>.png``) plus ``info.json``
    into ``folder`` (created), all or none. Files of the same name are replaced: the caller
    checks the folder first (``focusstack.jobs.fuse.check_steps_dir`` refuses a non-empty one
    without ``--overwrite``), and a long stack's later calls go to fresh subfolders. None of
    ``protected`` (the input frames) is ever written over: that raises
    :class:`~focusstack.errors.OutputExistsError` before anything is written."""
    protected = tuple(protected)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {folder / f"{name}.png": img for name, img in steps.visualise().items()}
    info = folder / "info.json"
    for path in (*images, info):  # before the work of encoding: an input among them writes nothing
        check_output(path, True, protected, error_class=FileWriteError)
    files = []
    for path, img in images.items():
        rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
        files.append((path, encode_image(path, np.clip(rgb, 0.0, 1.0).astype(np.float32), bit_depth=16)))
    files.append((info, (json.dumps(steps.info, indent=2, default=_json_value) + "\n").encode()))
    # one all-or-none write: the folder never mixes the maps of two runs
    write_files(files, overwrite=True, protected=protected, error_class=FileWriteError)
    return list(images)
