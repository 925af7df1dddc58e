"""`focusstack eval`: not built yet. It says so and exits 2 (never pretends to work)."""

from __future__ import annotations

import typer

from focusstack.cli._notbuilt import not_built


def register(app: typer.Typer) -> None:
    @app.command(
        "eval",
        help="Not built yet (exits 2); see the eval issue.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _cmd(ctx: typer.Context) -> None:
        not_built("eval", "the eval issue")
