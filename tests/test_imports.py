"""The package's import graph has no circles: imports run one way, down the pipeline.

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a lazy
import only hides a circle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "facerep"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package's own `__init__` not implied)."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, is_package):
                found = _known(target, modules)
                if found and found != name:
                    graph[name].add(found)
    return graph


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
            base = ".".join([*anchor, *([base] if base else [])])
        # `from a import b` imports module a.b when there is one, else a name from a.
        return [f"{base}.{alias.name}" for alias in node.names] + [base]
    return []


def _known(target: str, modules: dict[str, Path]) -> str | None:
    """The package module `target` names, or the module it is a name in; None outside."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_facerep_has_no_import_circles() -> None:
    graph = import_graph(PACKAGE_ROOT)
    assert len(graph) > 50  # the whole package was read
    assert circles(graph) == []


@pytest.mark.parametrize("lazy", [False, True])
def test_a_circle_is_found_even_behind_a_function_level_import(tmp_path: Path, lazy: bool) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub.b import thing\n")
    body = "def f():\n    from pkg import a\n" if lazy else "from .. import a\n"
    (package / "sub" / "b.py").write_text(body + "thing = 1\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert circles(import_graph(package)) == [["pkg.a", "pkg.sub.b"]]
