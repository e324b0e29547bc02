"""The package's import graph has no cycles: imports go one way, from owner to owned.

Pure: the graph is built from the source with :mod:`ast`; nothing is imported. Every
import statement counts, wherever it is:

- at module level;
- inside a function or method (a "lazy" import still ties the two modules together);
- under ``if TYPE_CHECKING:`` (an import for annotations only is still a dependency of
  the module's meaning; hiding a cycle there does not remove it).

``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the package,
else to ``pkg`` itself (its ``__init__``). The implicit import of a parent package that
Python performs before any submodule is not an edge: every module would otherwise be in a
cycle with an ``__init__`` that re-exports it.
"""
from __future__ import annotations

import ast
import pathlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

import bfxsync

PACKAGE_DIR = pathlib.Path(bfxsync.__file__).parent

#: (importing module, imported module, line) of one import statement.
Edge = Tuple[str, str, int]


def module_files(package_dir: pathlib.Path) -> Dict[str, pathlib.Path]:
    """Every module of the package under ``package_dir`` by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(node: ast.AST, module: str, is_package: bool, modules: Dict[str, pathlib.Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing module's package
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
        yield from submodules
        if len(submodules) < len(node.names):  # some names are attributes of ``target`` itself
            yield target


def import_edges(package_dir: pathlib.Path) -> List[Edge]:
    """Every import of one module of the package by another, wherever the statement is."""
    modules = module_files(package_dir)
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):  # all nodes: module level, function bodies, TYPE_CHECKING blocks
            for target in _imported_names(node, module, path.name == "__init__.py", modules):
                if target in modules and target != module:
                    edges.append((module, target, getattr(node, "lineno", 0)))
    return edges


def cycles(edges: List[Edge]) -> List[List[str]]:
    """The strongly connected components of more than one module (each holds at least one cycle), sorted."""
    graph: Dict[str, Set[str]] = {}
    for source, target, _ in edges:
        graph.setdefault(source, set()).add(target)
        graph.setdefault(target, set())
    # Tarjan's algorithm, iterative (no recursion limit to meet on a deep chain).
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work: List[Tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child: Optional[str] = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def describe(component: List[str], edges: List[Edge]) -> str:
    """The imports that tie ``component`` together, one per line, for the failure message."""
    members = set(component)
    lines = [f"  {source} -> {target} (line {line})" for source, target, line in sorted(edges)
             if source in members and target in members]
    return "import cycle among " + ", ".join(component) + ":\n" + "\n".join(lines)


def _write_package(root: pathlib.Path, files: Dict[str, str]) -> pathlib.Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


class TestLayout:
    def test_the_package_has_no_import_cycle(self):
        """No module of bfxsync imports, even lazily or for annotations only, one that imports it back."""
        edges = import_edges(PACKAGE_DIR)
        found = cycles(edges)
        assert not found, "\n".join(describe(component, edges) for component in found)

    def test_the_graph_sees_the_package_imports(self):
        """The graph holds the imports that are known to exist, lazy and relative ones included."""
        edges = {(source, target) for source, target, _ in import_edges(PACKAGE_DIR)}
        assert ("bfxsync.client", "bfxsync._engine.pool") in edges
        assert ("bfxsync._engine.link", "bfxsync._engine.connection") in edges
        assert ("bfxsync.cli", "bfxsync.cli_record") in edges
        assert ("bfxsync.cli_record", "bfxsync.cli_common") in edges
        assert ("bfxsync", "bfxsync.client") in edges  # the package's __init__ is a module like the others
        assert len(edges) > 100


class TestCycleFinder:
    def test_a_lazy_import_back_is_a_cycle(self, tmp_path):
        """An import inside a function that closes a loop is reported with both import lines."""
        package = _write_package(tmp_path, {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def f():\n    from .a import thing\n    return thing\n",
        })
        edges = import_edges(package)
        assert cycles(edges) == [["pkg.a", "pkg.b"]]
        message = describe(["pkg.a", "pkg.b"], edges)
        assert "pkg.a -> pkg.b (line 1)" in message and "pkg.b -> pkg.a (line 2)" in message

    def test_an_import_for_annotations_only_counts(self, tmp_path):
        """A ``TYPE_CHECKING`` import that closes a loop through a third module is a cycle too."""
        package = _write_package(tmp_path, {
            "__init__.py": "",
            "events.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.base import Handle\n",
            "sub/__init__.py": "from .base import Handle\n",
            "sub/base.py": "from ..runner import Runner\n",
            "runner.py": "from .events import Event\n",
        })
        assert cycles(import_edges(package)) == [["pkg.events", "pkg.runner", "pkg.sub.base"]]

    def test_importing_a_submodule_is_not_an_import_of_the_package(self, tmp_path):
        """``from . import sub`` depends on ``sub``, not on the ``__init__`` that re-exports it."""
        package = _write_package(tmp_path, {
            "__init__.py": "from .client import Client\nVERSION = '1'\n",
            "client.py": "from . import models\nfrom .models import Model\n",
            "models.py": "import pkg.helpers\n",
            "helpers.py": "",
        })
        edges = {(source, target) for source, target, _ in import_edges(package)}
        assert edges == {("pkg", "pkg.client"), ("pkg.client", "pkg.models"), ("pkg.models", "pkg.helpers")}
        assert cycles(import_edges(package)) == []

    def test_importing_a_name_of_the_package_itself_is_a_cycle(self, tmp_path):
        """``from .. import VERSION`` in a module the package imports loops through ``__init__``."""
        package = _write_package(tmp_path, {
            "__init__.py": "from .client import Client\nVERSION = '1'\n",
            "client.py": "def version():\n    from . import VERSION\n    return VERSION\n",
        })
        assert cycles(import_edges(package)) == [["pkg", "pkg.client"]]
