"""A missing optional package is a "missing package" error (exit 1) naming the extra, not the
catch-all "error (error)" (issue 19, 15). Runs without the eval extra: piq is hidden."""

from __future__ import annotations

import sys

import pytest

from focusstack.cli.common import report_error
from focusstack.errors import EXIT_FAILURE, DependencyError, classify


def test_missing_piq_is_labelled_missing_package(monkeypatch, capsys):
    from focusstack.metrics import reference

    monkeypatch.setitem(sys.modules, "piq", None)  # `import piq` raises ImportError
    with pytest.raises(reference.MissingDependencyError) as e:
        reference.import_piq()
    assert isinstance(e.value, DependencyError)
    kind = classify(e.value)
    assert (kind.label, kind.exit_code) == ("missing package", EXIT_FAILURE)
    assert e.value.expected and e.value.actual and "focusstack[eval]" in (e.value.fix or "")
    assert report_error(e.value) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "error (missing package)" in err and "error (error)" not in err
