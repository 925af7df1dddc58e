"""The README's error table has a row, with the right exit code, for every kind of error
focusstack raises (``focusstack/errors.py``), and says how inputs are read (issues 18, 19)."""

from __future__ import annotations

import re
from pathlib import Path

from focusstack.errors import EXIT_CODES, FocusstackError

README = Path(__file__).resolve().parents[1] / "README.md"


def _error_table() -> dict[str, int]:
    text = README.read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| (\d+) \|", section, flags=re.M)
    return {label: int(code) for label, code in rows}


def test_error_table_has_every_kind_with_its_exit_code():
    table = _error_table()
    for cls, kind in EXIT_CODES.items():
        if cls is FocusstackError or not issubclass(cls, FocusstackError):
            continue  # the catch-all and Python's own (memory, Ctrl-C)
        assert kind.label in table, f"README's error table has no row {kind.label!r} ({cls.__name__})"
        assert table[kind.label] == kind.exit_code, f"{kind.label}: README says {table[kind.label]}, errors.py {kind.exit_code}"
    for label in ("cannot write file", "inputs do not pair", "missing package"):
        assert table.get(label) == 1


def test_inputs_are_read_upright_and_bright_float_tiffs_clipped():
    inputs = README.read_text().split("* **Inputs**", 1)[1].split("\n* **", 1)[0]
    assert "Orientation" in inputs and "upright" in inputs
    assert re.search(r"above 1(\.0)?.*clipped.*warning", " ".join(inputs.split()))
