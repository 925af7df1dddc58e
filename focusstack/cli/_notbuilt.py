"""Shared body of the subcommands that are planned but not built yet: say so and exit 2."""

from __future__ import annotations

import typer

from focusstack.cli.common import handle_errors
from focusstack.errors import NotBuiltError


def not_built(command: str, issue: str) -> None:
    with handle_errors():
        raise NotBuiltError(
            f"`focusstack {command}` is not built yet ({issue}); it did nothing",
            fix="use `focusstack fuse` for now, or follow the issue tracker for this command",
        )
    raise typer.Exit(2)  # pragma: no cover - handle_errors always exits
