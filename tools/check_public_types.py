"""Fail when a public function or method of polyinit has a parameter or a return without a type.

mypy's ``disallow_untyped_defs`` cannot tell public from private, and polyinit's rule is about the
public surface: every function a user can call carries type hints (private helpers may be
untyped; mypy still checks every typed body and every partly typed signature). Public means: in a
module whose path has no ``_``-prefixed part, at module level or in a public class, with a name
that does not start with ``_`` (``__init__`` and ``__call__`` count: users call them). ``self``
and ``cls`` need no annotation; ``__init__`` needs no return type.

Usage: ``python tools/check_public_types.py [ROOT]`` (default: ``polyinit/``); exit 1 with one line
per finding.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

CALLED_DUNDERS = ("__init__", "__call__")


def _public(name: str) -> bool:
    return not name.startswith("_") or name in CALLED_DUNDERS


def _findings(function: ast.FunctionDef | ast.AsyncFunctionDef, where: str, method: bool) -> Iterator[str]:
    arguments = function.args
    every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
    if (
        method
        and every
        and every[0].arg in ("self", "cls")
        and not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list)
    ):
        every = every[1:]
    missing = [a.arg for a in every if a.annotation is None]
    missing += [f"*{a.arg}" for a in (arguments.vararg,) if a is not None and a.annotation is None]
    missing += [f"**{a.arg}" for a in (arguments.kwarg,) if a is not None and a.annotation is None]
    if missing:
        yield f"{where}:{function.lineno}: {function.name}() has no type for {', '.join(missing)}"
    if function.returns is None and function.name != "__init__":
        yield f"{where}:{function.lineno}: {function.name}() has no return type"


def check_module(path: Path, root: Path) -> list[str]:
    """The findings in one module (none when the module itself is private)."""
    relative = path.relative_to(root.parent)
    if any(part.startswith("_") and part != "__init__.py" for part in relative.parts):
        return []
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            found += _findings(node, str(relative), method=False)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(item.name):
                    found += _findings(item, str(relative), method=True)
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent.parent / "polyinit")
    found = [line for path in sorted(root.rglob("*.py")) for line in check_module(path, root)]
    print("\n".join(found) if found else f"check_public_types: every public function in {root} is typed")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
