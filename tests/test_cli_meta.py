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
