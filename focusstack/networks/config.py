"""The one ``to_dict`` / ``from_dict`` / ``save`` / ``load`` of every network architecture
config (a frozen dataclass saved as ``config.json`` beside its weights). No torch: the CLI reads
the architectures' defaults for its help."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path


class ArchConfig:
    """Mixin for a frozen dataclass of an architecture: tuple fields become JSON lists and come
    back as tuples; unknown keys are refused with a ``ValueError`` naming ``_kind`` and the keys."""

    _kind = "model"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):  # noqa: ANN206  (an instance of cls)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls._kind} config keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path):  # noqa: ANN206
        return cls.from_dict(json.loads(Path(path).read_text()))
