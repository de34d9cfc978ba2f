"""No import circle among polyinit's modules (issue 15 point 4).

The graph is read statically with ``ast`` from module-level imports only (imports inside functions
are the lazy ones, deliberately out of the cycle): an edge A -> B for ``import polyinit.B``,
``from polyinit.B import x`` and ``from polyinit import B`` (when B is a module), including the
parent packages that importing B runs first.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "polyinit"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def targets(name: str, known: dict) -> set[str]:
    """``name`` and the packages above it that exist in polyinit (importing a.b runs a first)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in known}


def edges(name: str, path: pathlib.Path, known: dict, lazy: bool = False) -> set[str]:
    """The polyinit modules ``name`` imports at module level (and inside functions if ``lazy``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:  # module level, including under if/try at the top
        for sub in ast.walk(node) if lazy or isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.Import):
                for alias in sub.names:
                    found |= targets(alias.name, known)
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - sub.level + 1] + ([base] if base else [])
                    )
                found |= targets(base, known)
                found |= {f"{base}.{a.name}" for a in sub.names if f"{base}.{a.name}" in known}
    found.discard(name)
    # A package's own submodules importing the package is the normal direction, not a circle.
    return {t for t in found if not name.startswith(t + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    known = modules()
    return {name: edges(name, path, known, lazy) for name, path in known.items()}


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import circles among polyinit modules: {found}"


def test_the_cycle_finder_sees_a_cycle():
    # The test above can fail: a two-module circle and a three-module one are both reported.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_the_plan_imports_no_backend():
    # Not even lazily: the oracle must not depend on what it judges.
    graph = import_graph(lazy=True)
    assert not {t for t in graph["polyinit.plan"] if t.startswith("polyinit.backends")}


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from polyinit.backends import numpy", {"polyinit.backends.numpy"}),  # the parent package is no edge
        ("from polyinit import nodes as n", {"polyinit.nodes"}),
        ("from . import numpy", {"polyinit.backends.numpy"}),
        ("def f():\n    from polyinit import nodes", set()),
    ],
)
def test_edges_are_read_from_module_level_imports(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {
        "polyinit.backends": None,
        "polyinit.backends.numpy": None,
        "polyinit.nodes": None,
        "polyinit.backends.mod": None,
    }
    assert edges("polyinit.backends.mod", path, known) == expected
