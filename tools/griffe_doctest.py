"""A Griffe extension for the documentation site: polyinit's docstrings carry doctest examples
(``>>> ...`` lines and their output) inline, the way the standard library's do. Markdown would read
``x[1][1]`` there as a reference link and reflow the lines, so each run of doctest lines is wrapped
in a ``pycon`` code fence before mkdocstrings renders the docstring. The docstrings themselves stay
plain doctests (the suite runs them)."""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every doctest run (a ``>>>`` line, its ``...`` continuations and output up to
    a blank line) inside a fenced ``pycon`` block."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not inside:
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Wraps doctest runs in code fences on every object's docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
