"""Generate the shell completion scripts in ``completions/`` from the Typer app.

``python -m focusstack.cli.completions completions`` rewrites them; a test fails when the
committed files differ from what this prints. The scripts call back into ``focusstack`` for
candidates, so subcommands and options stay current; the files only change with Typer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.completion import get_completion_script

SHELLS = {"bash": "focusstack.bash", "zsh": "_focusstack", "fish": "focusstack.fish"}


def script(shell: str) -> str:
    """The completion script Typer's ``--show-completion`` prints for ``shell``."""
    return get_completion_script(prog_name="focusstack", complete_var="_FOCUSSTACK_COMPLETE", shell=shell) + "\n"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in SHELLS.items():
        (folder / name).write_text(script(shell))
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "completions")):
        print(p)
