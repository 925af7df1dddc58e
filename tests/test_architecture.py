"""The package's import graph (issue 20, docs/architecture.md), read with ``ast``.

- no import cycle among focusstack modules, nor among its subpackages;
- a module imports (and lazily references, see focusstack.lazy) only its own layer or lower ones;
- no project import inside a function body; a third-party optional extra imported there
  (onnx, ray, bpy, piq, matplotlib, ...) carries a comment that says so;
- every lazy reference names a module that exists.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "focusstack"

#: Lowest first. A module belongs to the longest prefix listed; it may import its own layer and
#: the ones before it. docs/architecture.md explains each.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("focusstack", "focusstack.errors", "focusstack.config", "focusstack.progress",
                    "focusstack.lazy", "focusstack.ops")),
    ("io, networks", ("focusstack.io", "focusstack.networks", "focusstack.metrics", "focusstack.tiling",
                      "focusstack.backends")),
    ("maps, alignment, rendering", ("focusstack.maps", "focusstack.align", "focusstack.rendering")),
    ("refinement", ("focusstack.refinement",)),
    ("engines, training", ("focusstack.engines", "focusstack.training")),
    ("stack", ("focusstack.stack",)),
    ("jobs", ("focusstack.jobs",)),
    ("cli", ("focusstack.cli", "focusstack.__main__")),
]

#: Optional extras: imported inside a function (a module must work without them), each such
#: import with a comment that says so.
OPTIONAL = ("onnx", "onnxruntime", "onnxscript", "ray", "bpy", "piq", "matplotlib")

LAZY_REF = re.compile(r"^(focusstack(?:\.\w+)*):[A-Za-z_][\w.]*$")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def layer_of(module: str) -> int:
    best, layer = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    assert layer is not None, f"{module} is in no layer of tests/test_architecture.py: add it to LAYERS"
    return layer


def _known(name: str) -> str:
    """The focusstack module an import names (``from pkg import mod`` names ``pkg.mod``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_pkg: bool) -> None:
        self.module, self.is_pkg = module, is_pkg
        self.top: set[str] = set()
        self.lazy: list[tuple[int, str]] = []
        self.in_function: list[tuple[int, str]] = []  # (line, imported name)
        self._depth = 0
        self._type_checking = 0

    def _targets(self, node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = self.module.split(".") if self.is_pkg else self.module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        if mod.startswith("focusstack"):
            return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        return [mod]

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        for t in self._targets(node):
            if self._depth:
                self.in_function.append((node.lineno, t))
            elif t.startswith("focusstack") and not self._type_checking:
                self.top.add(_known(t))

    visit_Import = _import
    visit_ImportFrom = _import

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            m = LAZY_REF.match(node.value)
            if m:
                self.lazy.append((node.lineno, m.group(1)))


def _scan() -> dict[str, _Visitor]:
    out = {}
    for module, path in MODULES.items():
        v = _Visitor(module, path.name == "__init__.py")
        v.visit(ast.parse(path.read_text(), str(path)))
        out[module] = v
    return out


SCAN = _scan()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _edges() -> dict[str, set[str]]:
    """Module -> the modules it imports at import time or references lazily."""
    graph: dict[str, set[str]] = defaultdict(set)
    for m, v in SCAN.items():
        graph[m] |= {t for t in v.top if t != m}
        graph[m] |= {_known(t) for _, t in v.lazy if _known(t) != m}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_import_cycle_among_modules():
    graph = {m: set(v.top) - {m} for m, v in SCAN.items()}
    assert _cycles(graph) == []


def test_no_import_cycle_among_subpackages():
    graph: dict[str, set[str]] = defaultdict(set)
    for m, targets in _edges().items():
        for t in targets:
            if _package(t) != _package(m) and _package(m) != "focusstack":
                graph[_package(m)].add(_package(t))
    graph.pop("focusstack", None)
    for deps in graph.values():
        deps.discard("focusstack")
    assert _cycles(graph) == []


def test_lower_layers_never_import_higher_ones():
    bad = []
    for m, targets in _edges().items():
        for t in targets:
            if layer_of(t) > layer_of(m):
                bad.append(f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})")
    assert bad == []


def test_no_project_import_inside_a_function():
    bad = [f"{m}:{line} imports {t}" for m, v in SCAN.items() for line, t in v.in_function if t.startswith("focusstack")]
    assert bad == []


def test_optional_imports_inside_functions_are_commented():
    bad = []
    for m, v in SCAN.items():
        lines = MODULES[m].read_text().splitlines()
        for line, t in v.in_function:
            if t.startswith("focusstack"):
                continue
            if t.split(".")[0] in OPTIONAL and "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
                bad.append(f"{m}:{line} imports the optional {t} without a comment saying why")
    assert bad == []


def test_lazy_references_name_existing_modules():
    refs = [(m, line, t) for m, v in SCAN.items() for line, t in v.lazy]
    assert [f"{m}:{line} references {t}, which does not exist" for m, line, t in refs if t not in MODULES] == []
