"""The man page (generated from the Typer app, committed as man/focusstack.1) and `focusstack docs`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from focusstack.cli.app import app
from focusstack.cli.manpage import _walk, render

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_man_page_is_current():
    committed = (REPO / "man" / "focusstack.1").read_text()
    assert committed == render(), "man/focusstack.1 is stale: run `make man` (CLI help or options changed)"


def test_man_page_documents_every_command_and_option():
    page = render()
    leaves = list(_walk(typer.main.get_command(app), ("focusstack",)))
    assert len(leaves) >= 8 and ("focusstack", "docs") in [p for p, _ in leaves]
    for path, cmd in leaves:
        assert f".SS {' '.join(path)}".replace("-", "\\-") in page, f"{' '.join(path)} has no section"
        for p in cmd.params:
            if p.param_type_name == "option" and not p.hidden:
                for opt in p.opts:
                    assert opt.replace("-", "\\-") in page, f"{' '.join(path)} {opt} is not in the man page"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings(tmp_path):
    page = tmp_path / "focusstack.1"
    page.write_text(render())
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", str(page)], capture_output=True, text=True,
                          timeout=60).stdout
    assert "FOCUSSTACK_FUSION_DIR" in text and "EXIT STATUS" in text and "--engine" in text.replace("‐", "-")


def test_docs_in_a_checkout_lists_the_checkouts_files():
    r = runner.invoke(app, ["docs", "--json"])
    assert r.exit_code == 0, r.output
    paths = json.loads(r.stdout)
    assert set(paths) == {"readme", "docs", "man", "license", "bash", "zsh", "fish"}
    for key, p in paths.items():
        assert p is not None and Path(p).exists() and Path(p).resolve().is_relative_to(REPO.resolve()), (key, p)
    assert Path(paths["man"]) == REPO / "man" / "focusstack.1"


def test_docs_reports_what_is_missing(monkeypatch):
    import focusstack.cli.docs as docs

    monkeypatch.setattr(docs, "_checkout_root", lambda: None)
    monkeypatch.setattr(docs, "_prefix_candidates", lambda: [Path("/nonexistent-prefix")])
    r = runner.invoke(app, ["docs"])
    assert r.exit_code == 1
    assert "(not installed)" in r.stdout and "not found: README" in r.stderr and "fix:" in r.stderr


def test_docs_and_manpage_import_no_torch():
    code = "import sys, focusstack.cli.docs, focusstack.cli.manpage; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
