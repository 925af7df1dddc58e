"""Every choice option of every command is an Enum (issue 18): --help lists its values and a bad
value gets Typer's standard error (exit 2); the shared options come from cli/options.py (issue 20)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from focusstack.cli.app import app

runner = CliRunner()


def _tuples():
    from focusstack.jobs.bench import BACKENDS as BENCH_BACKENDS, BENCH_PRECISIONS
    from focusstack.config import DEVICES, PARTS, TRAIN_DEVICES
    from focusstack.refinement.refine import MASK_SOURCES, ORDERS, R_INIT_METHODS, SIGMA_SOURCES
    from focusstack.rendering.config import RENDER_DEVICES, RENDER_ENGINES

    return {
        (("refine-tr",), "--mask-source"): MASK_SOURCES,
        (("refine-tr",), "--sigma-source"): SIGMA_SOURCES,
        (("refine-tr",), "--r-init"): R_INIT_METHODS,
        (("refine-tr",), "--order"): ORDERS,
        (("eval",), "--device"): DEVICES,
        (("render-dataset",), "--engine"): RENDER_ENGINES,
        (("render-dataset",), "--device"): RENDER_DEVICES,
        (("bench",), "--backend"): BENCH_BACKENDS,
        (("bench",), "--device"): DEVICES,
        (("bench",), "--precision"): BENCH_PRECISIONS,
        (("export-onnx",), "--part"): PARTS,
        (("train", "fsb"), "--device"): TRAIN_DEVICES,
        (("train", "keb"), "--device"): TRAIN_DEVICES,
    }


CASES = [
    (("refine-tr",), "--mask-source"), (("refine-tr",), "--sigma-source"), (("refine-tr",), "--r-init"),
    (("refine-tr",), "--order"), (("eval",), "--device"), (("render-dataset",), "--engine"),
    (("render-dataset",), "--device"), (("bench",), "--backend"), (("bench",), "--device"),
    (("bench",), "--precision"), (("export-onnx",), "--part"), (("train", "fsb"), "--device"),
    (("train", "keb"), "--device"),
]

#: Arguments that get each command past its required ones (the bad choice fails first anyway).
REQUIRED = {
    ("refine-tr",): ["a.png", "b.png", "-o", "out.png"],
    ("eval",): [],
    ("render-dataset",): ["ds", "--samples", "1"],
    ("bench",): [],
    ("export-onnx",): ["-o", "onnx"],
    ("train", "fsb"): ["--data", "d", "--out", "o"],
    ("train", "keb"): ["--data", "d", "--out", "o"],
}


def _flat(text: str) -> str:
    """The help without rich's box characters and line breaks."""
    return re.sub(r"[\s│]+", " ", text)


@pytest.mark.parametrize("cmd, option", CASES, ids=[f"{' '.join(c)} {o}" for c, o in CASES])
def test_choice_lists_its_values_and_rejects_a_bad_one(cmd, option, tmp_path):
    values = _tuples()[(cmd, option)]
    h = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400"})
    assert h.exit_code == 0, h.output
    line = next(ln for ln in h.output.splitlines() if re.search(rf"{re.escape(option)}\b", ln) and "<" in ln)
    assert "|".join(values) in line, line
    assert "<bool>" not in h.output and "<str>" not in _flat(line)
    r = runner.invoke(app, [*cmd, *REQUIRED[cmd], option, "no-such-value"], env={"COLUMNS": "400"})
    assert r.exit_code == 2, r.output
    assert "Invalid value" in r.output and "no-such-value" in r.output


@pytest.mark.parametrize("cmd", list(REQUIRED), ids=[" ".join(c) for c in REQUIRED])
def test_no_bool_metavar_and_shared_help(cmd):
    h = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400"})
    assert h.exit_code == 0 and "<bool>" not in h.output
    flat = _flat(h.output)
    assert "Show tracebacks (also FOCUSSTACK_DEBUG=1)." in flat
    assert "Print a JSON summary to stdout (and nothing else there)." in flat
