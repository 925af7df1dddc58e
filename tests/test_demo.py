"""`make demo` works on a machine without ../shared: its commands, read from the Makefile, run
in an empty folder and leave the fused image and its ground truth (issue 18)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def demo_commands() -> list[list[str]]:
    """The `focusstack ...` lines of the Makefile's demo target, variables expanded."""
    text = (REPO / "Makefile").read_text()
    stack = re.search(r"^DEMO_STACK := (.+)$", text, re.M).group(1).strip()
    body = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("$(VENV)/bin/focusstack ") and "$(SHARED)" not in line:  # not the pcb7 extra
            line = line.replace("$(DEMO_STACK)", stack)
            out.append(shlex.split(line)[1:])
    return out


def test_make_demo_without_shared(tmp_path):
    cmds = demo_commands()
    assert [c[0] for c in cmds] == ["render-dataset", "fuse"], cmds
    env = dict(os.environ, FOCUSSTACK_SHARED=str(tmp_path / "no-shared"))
    for args in cmds:
        expanded = []
        for a in args:  # what the shell does with the Makefile's globs
            expanded += sorted(str(q) for q in tmp_path.glob(a)) if "*" in a else [a]
        r = subprocess.run([sys.executable, "-m", "focusstack", *expanded], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out/demo.tif").stat().st_size > 0
    assert (tmp_path / "out/demo-stack/samples/000000/gt.png").is_file()
