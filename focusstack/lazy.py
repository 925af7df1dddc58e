"""Lazy references: ``"focusstack.module:attribute"`` strings, imported on first use.

The one sanctioned way for a module to reach code it must not import at start-up. The torch
engines, the network loaders and the CLI's job functions are named by such a string, so that
``focusstack --help``, shell completion and the default decision engine never import torch
(issue 17). Every reference is a literal string of this form, so tests/test_architecture.py
can find them all and check them with the same layer rules as ``import`` statements: a lazy
reference may point only down (or within its layer), never up.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def load(ref: str) -> Any:  # noqa: ANN401 - whatever the reference names
    """``"package.module:name"`` -> that module's ``name`` (the module imported on first use);
    ``name`` may be a submodule (``"focusstack.metrics:fusion"``) or dotted (``"module:Class.attr"``).

    Raises ``ValueError`` for a reference without ``:``; ``ImportError``/``AttributeError`` as
    Python does for a missing module or name.
    """
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"lazy reference {ref!r}: expected 'package.module:name'")
    obj: Any = import_module(module)
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if not hasattr(obj, "__path__"):
                raise
            module = f"{module}.{part}"  # a submodule not imported yet: "focusstack.metrics:fusion"
            obj = import_module(module)
        else:
            module = getattr(obj, "__name__", module)
    return obj


def call(ref: str, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
    """``load(ref)(*args, **kwargs)``."""
    return load(ref)(*args, **kwargs)
