"""The help of the commands that load our models names where they are found: the shipped
package data (``focusstack/models/<kind>``) or the ``$FOCUSSTACK_*_DIR`` override, not the
``models/`` folder of a checkout, which an installed wheel does not have (issue 18)."""

from __future__ import annotations

import re

import pytest
import typer

from focusstack.cli.app import app

#: "models/fusion" not preceded by "focusstack/" (or any other path part).
BARE = re.compile(r"(?<![\w/])models/(fusion|fsb|keb)\b")


def _help_texts(name: str) -> str:
    cmd = typer.main.get_command(app).commands[name]
    return "\n".join([cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params])


@pytest.mark.parametrize(("name", "kinds"), [("refine-tr", ("fsb", "keb")), ("export-onnx", ("fusion",)), ("bench", ("fusion",))])
def test_help_names_the_shipped_models(name, kinds):
    text = _help_texts(name)
    assert not BARE.findall(text), f"{name} --help still names a checkout's models/ folder"
    for kind in kinds:
        assert f"focusstack/models/{kind}" in text
        assert f"$FOCUSSTACK_{kind.upper()}_DIR" in text
