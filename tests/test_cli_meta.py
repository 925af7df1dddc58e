"""The CLI's own surface: help texts read the config defaults, completions are current."""

from pathlib import Path

from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.cli.completions import SHELLS, script
from focusstack.config import FuseConfig, TileConfig

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_completion_scripts_are_current():
    for shell, name in SHELLS.items():
        committed = (REPO / "completions" / name).read_text()
        assert committed == script(shell), f"completions/{name} is stale: run `make completions`"


def test_help_shows_config_defaults():
    r = runner.invoke(app, ["fuse", "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert str(TileConfig().tile) in r.output and FuseConfig().precision in r.output
    for opt in ("--batch", "--overwrite", "--json", "--device", "--precision", "--tile", "--vae-weights"):
        assert opt in r.output


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("focusstack ")


# ---- start-up (issue 17): the root lists its commands without importing them ----------------

import inspect  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import typer  # noqa: E402

from focusstack.cli.app import COMMANDS, load_command  # noqa: E402


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_root_lists_each_command_by_its_own_help(name):
    cmd = load_command(name)
    first = inspect.cleandoc(cmd.help or "").split("\n\n")[0]
    assert COMMANDS[name][1] == first, f"COMMANDS[{name!r}] in focusstack/cli/app.py differs from the command's help"


def test_every_registered_command_is_listed():
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="focusstack")
    assert root.list_commands(ctx) == list(COMMANDS)
    for name in COMMANDS:  # loaded on first use, through get_command and commands[...]
        assert root.get_command(ctx, name).name == name
        assert root.commands[name].name == name


_PROBE = """
import sys
from focusstack.cli.app import app
try:
    app(prog_name="focusstack", args=sys.argv[1:])
except SystemExit:
    pass
heavy = [m for m in ("numpy", "cv2", "torch") if m in sys.modules]
heavy += [m for m in sys.modules if m.startswith("focusstack.cli.") and m not in ("focusstack.cli.app", "focusstack.cli.options")]
sys.stderr.write("HEAVY=" + ",".join(sorted(heavy)) + "\\n")
"""


@pytest.mark.parametrize(("args", "env"), [
    (["--help"], {}),
    (["--version"], {}),
    ([], {}),
    ([], {"_FOCUSSTACK_COMPLETE": "complete_bash", "COMP_WORDS": "focusstack ", "COMP_CWORD": "1"}),
    ([], {"_FOCUSSTACK_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "focusstack "}),
])
def test_help_version_and_completion_import_neither_numpy_nor_cv2(args, env):
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=120)
    heavy = r.stderr.rsplit("HEAVY=", 1)[-1].strip()
    assert "HEAVY=" in r.stderr and heavy == "", f"focusstack {' '.join(args)} imported {heavy}"
    assert ("focusstack " if args == ["--version"] else "train") in r.stdout, r.stdout + r.stderr


def test_completing_a_commands_options_loads_that_command():
    env = {**os.environ, "_FOCUSSTACK_COMPLETE": "complete_bash", "COMP_WORDS": "focusstack fuse --pr", "COMP_CWORD": "2"}
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.split() == ["--precision", "--progress"], r.stdout + r.stderr
