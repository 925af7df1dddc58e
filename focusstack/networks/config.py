"""The one ``to_dict`` / ``from_dict`` / ``save`` / ``load`` of every network architecture
config (a frozen dataclass saved as ``config.json`` beside its weights). No torch: the CLI reads
the architectures' defaults for its help."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from focusstack.errors import ConfigError


class ArchConfigError(ConfigError, ValueError):
    """A config dict or ``config.json`` that does not describe the architecture: unknown keys,
    or not a JSON object. Also a ``ValueError``, as the configs' own checks in
    ``__post_init__`` raise, so one ``except ValueError`` catches every bad config."""


class ArchConfig:
    """Mixin for a frozen dataclass of an architecture.

    :meth:`to_dict` gives a JSON-ready dict (tuple fields become lists, field order kept);
    :meth:`from_dict` takes such a dict back (lists become tuples; a missing key takes its
    default, as configs written before a field was added do) and refuses unknown keys with an
    :class:`ArchConfigError` naming ``_kind``, the keys expected and found, and the fix. ``save(path)`` writes ``json.dumps(to_dict(), indent=2)`` plus a newline (the
    bytes of the shipped ``config.json`` files); ``load(path)`` reads it back.
    """

    _kind = "model"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):  # noqa: ANN206  (an instance of cls)
        names = [f.name for f in fields(cls)]
        if not isinstance(d, dict):
            raise ArchConfigError(
                f"a {cls._kind} config must be a JSON object",
                expected=f"an object with the keys {', '.join(names)}",
                actual=type(d).__name__,
                fix="keep the config.json written beside the weights by the same training run",
            )
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ArchConfigError(
                f"unknown {cls._kind} config keys: {', '.join(unknown)}",
                expected=f"keys among {', '.join(names)} (a missing key takes its default)",
                actual=f"the keys {', '.join(d) or '(none)'}",
                fix="keep the config.json written beside the weights by the same training run "
                "(or write one with the architecture's to_dict())",
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path):  # noqa: ANN206
        return cls.from_dict(json.loads(Path(path).read_text()))
