"""`focusstack docs`: where the documentation, the man page and the shell completions live.

In a source checkout they are the checkout's ``README.md``, ``docs/``, ``man/focusstack.1`` and
``completions/``. In an installed wheel they are its data files, under the install prefix
(``share/doc/focusstack``, ``share/man/man1``, and the shells' completion folders), found
through the distribution's RECORD so that venv, ``--user`` and system installs all answer right.
Torch-free, like every command's import.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from focusstack.cli.common import handle_errors
from focusstack.errors import FocusstackError

#: Each item: key, description, path in a checkout, path of the wheel's data file (POSIX,
#: relative to the install prefix). Keep the data paths in step with pyproject.toml's data-files.
ITEMS = (
    ("readme", "README", "README.md", "share/doc/focusstack/README.md"),
    ("docs", "documentation folder", "docs", "share/doc/focusstack/docs"),
    ("man", "man page", "man/focusstack.1", "share/man/man1/focusstack.1"),
    ("license", "licence", "LICENSE", "share/doc/focusstack/LICENSE"),
    ("bash", "bash completion", "completions/focusstack.bash", "share/bash-completion/completions/focusstack.bash"),
    ("zsh", "zsh completion", "completions/_focusstack", "share/zsh/site-functions/_focusstack"),
    ("fish", "fish completion", "completions/focusstack.fish", "share/fish/vendor_completions.d/focusstack.fish"),
)


@dataclass(frozen=True)
class Located:
    key: str
    what: str
    path: Path | None


def _checkout_root() -> Path | None:
    """The source checkout the package runs from (editable install or PYTHONPATH), if any."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "focusstack"' in pyproject.read_text(errors="replace"):
        return root
    return None


def _prefix_candidates() -> list[Path]:
    """Install prefixes to look in, most specific first: the distribution's RECORD, then the
    data scheme of this interpreter (venv or system) and the user scheme."""
    import sysconfig

    out: list[Path] = []
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("focusstack")
        for f in dist.files or ():
            posix = f.as_posix()
            if posix.endswith("share/man/man1/focusstack.1"):
                # <prefix>/share/man/man1/focusstack.1 -> <prefix>
                out.append(Path(dist.locate_file(f)).resolve().parents[3])
    except PackageNotFoundError:
        pass
    out.append(Path(sysconfig.get_path("data")))
    try:
        out.append(Path(sysconfig.get_path("data", f"{'nt' if sys.platform == 'win32' else 'posix'}_user")))
    except KeyError:
        pass
    return out


def locate() -> list[Located]:
    """Where each item is; ``path`` is None for an item that is not there."""
    root = _checkout_root()
    prefixes = _prefix_candidates()
    found = []
    for key, what, in_checkout, data in ITEMS:
        candidates = ([root / in_checkout] if root is not None else []) + [p / data for p in prefixes]
        found.append(Located(key, what, next((c for c in candidates if c.exists()), None)))
    return found


def register(app: typer.Typer) -> None:
    @app.command("docs", help=(
        "Print where the documentation (README, docs/), the man page and the shell completions "
        "are: the checkout's files in a source checkout, the installed data files otherwise. "
        "Read the man page with `man -l PATH` (or `man focusstack` when its folder is on MANPATH)."
    ))
    def _cmd(
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object (key: path or null)."),
    ) -> None:
        items = locate()
        if json_out:
            sys.stdout.write(json.dumps({i.key: (str(i.path) if i.path else None) for i in items}, indent=2) + "\n")
        else:
            width = max(len(i.what) for i in items)
            for i in items:
                sys.stdout.write(f"{i.what:<{width}}  {i.path if i.path else '(not installed)'}\n")
        missing = [i.what for i in items if i.path is None]
        if missing:
            with handle_errors():
                raise FocusstackError(
                    f"focusstack docs: not found: {', '.join(missing)}",
                    expected="the focusstack wheel's data files (share/doc/focusstack, share/man/man1, "
                    "shell completion folders) under the install prefix, or a source checkout",
                    actual="none of: " + ", ".join(str(p) for p in _prefix_candidates()),
                    fix="reinstall the wheel (`pip install --force-reinstall --no-deps focusstack-*.whl`); "
                    "an install from a source tree without man/ and docs/ lacks them",
                )
