"""Backend selection for test suites (polyinit's own and users'): one fixture, named per backend.

``POLYINIT_TEST_BACKENDS=numpy,torch,...`` names the backends a run requires: one that cannot be
imported fails the run instead of being skipped. Unset, every backend whose framework imports here
is used, and the ones missing are reported in the session header rather than skipped in silence.
"""

from __future__ import annotations

import os
from typing import Any

from polyinit.backends import REGISTRY, get_backend
from polyinit.errors import BackendUnavailableError, PolyinitError


def required_backends() -> list[str] | None:
    raw = os.environ.get("POLYINIT_TEST_BACKENDS", "").strip()
    if not raw:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise PolyinitError(f"POLYINIT_TEST_BACKENDS names unknown backend(s) {unknown}; known: {list(REGISTRY)}")
    return names


def backends_for_run() -> tuple[list[str], list[str]]:
    """(backends to test, backends missing). Required-but-missing backends raise."""
    required = required_backends()
    names = required if required is not None else list(REGISTRY)
    found, missing = [], []
    for name in names:
        try:
            get_backend(name)
        except BackendUnavailableError as error:
            if required is not None:
                raise BackendUnavailableError(f"POLYINIT_TEST_BACKENDS requires {name!r}: {error}") from None
            missing.append(name)
            continue
        found.append(name)
    return found, missing


# Third-party packages a test module may need at import; a module that imports one that is not
# installed is left out of collection and named in the run's summary.
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "mxnet", "haiku", "equinox", "transformers", "mup")


def missing_imports(path: str | os.PathLike) -> list[str]:
    """The frameworks ``path`` imports at module level (``import x``, ``from x import``,
    ``x = __import__("x")``) that are not installed here; found statically, importing nothing.

    >>> import tempfile, pathlib
    >>> test = pathlib.Path(tempfile.mkdtemp()) / "test_x.py"
    >>> _ = test.write_text('import numpy\\nmx = __import__("no_such_framework_xyz")\\n')
    >>> missing_imports(test)    # not a framework polyinit knows: collected, and fails loudly
    []
    """
    import ast
    import importlib.util

    try:
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    names: set[str] = set()
    for statement in tree.body:  # module level: what runs at import
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "__import__"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value.split(".")[0])
    return sorted(name for name in names if name in FRAMEWORKS and importlib.util.find_spec(name) is None)


def write_not_tested(terminalreporter: Any, root: str | os.PathLike, missing_backends: list[str]) -> None:
    """The ``pytest_terminal_summary`` section both suites print: what was not tested here."""
    lines = not_tested(root, missing_backends)
    if lines:
        terminalreporter.section("polyinit: not tested here")
        for line in lines:
            terminalreporter.write_line(line)


def not_tested(root: str | os.PathLike, missing_backends: list[str]) -> list[str]:
    """Lines for a test run's summary: the backends not installed, and each test module under
    ``root`` left out because a framework it imports is not installed."""
    import pathlib

    lines = [f"backends not installed (not tested): {', '.join(missing_backends)}"] if missing_backends else []
    for path in sorted(pathlib.Path(root).rglob("test_*.py")):
        lacking = missing_imports(path)
        if lacking:
            lines.append(f"{path.relative_to(pathlib.Path(root).parent)}: not collected, needs {', '.join(lacking)}")
    return lines


# The backend each framework package serves (a required backend's framework is never excused).
_BACKEND_OF = {
    "torch": "torch",
    "tensorflow": "keras",
    "keras": "keras",
    "jax": "jax",
    "flax": "jax",
    "haiku": "jax",
    "equinox": "jax",
    "mxnet": "mxnet",
}


def uninstalled_framework(error: BaseException) -> str | None:
    """The framework ``error`` (an ImportError) failed to import, when it is one polyinit knows,
    it is not installed here, and POLYINIT_TEST_BACKENDS does not require its backend; else None."""
    import importlib.util

    if not isinstance(error, ImportError) or not error.name:
        return None
    name = error.name.split(".")[0]
    if name not in FRAMEWORKS or importlib.util.find_spec(name) is not None:
        return None
    required = required_backends() or []
    return None if _BACKEND_OF.get(name) in required else name
