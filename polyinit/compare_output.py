"""The comparison as a text table, Markdown, CSV and the JSON document (which carries every input)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Optional

from polyinit.compare import Row, to_json


def title(layer: str, activation: str, n_in: int, n_out: int, depth: int) -> str:
    return (
        f"polyinit compare: {layer} {n_in} -> {n_out}, stacks of {depth} layers "
        f"(linear, and {activation} between layers), input Var 1"
    )


FOOTNOTE = (
    "fan_in*var(w): what one layer multiplies E[x^2] by. Var@L: closed form, and in brackets the mean "
    "over 4 networks of the real layers where installed. Closed form: Var(y) = fan_in var(w) E[phi(x)^2] "
    "+ var(b), the activation's moments by Gauss-Hermite quadrature (see polyinit.propagation)."
)


def _number(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def table(rows: Sequence[Row], depth: int, activation: str, sep: str = " ") -> tuple[list[str], list[list[str]]]:
    """The comparison's header and cells; ``sep`` goes between a closed form and its measurement."""
    head = [
        "framework",
        "weight",
        "bias",
        "std(w)",
        "fan_in*var(w)",
        f"Var@{depth} linear",
        f"Var@{depth} {activation}",
        "source",
    ]

    def pair(closed: float, measured: Optional[list[float]]) -> str:
        return _number(closed) + (f"{sep}({_number(measured[-1])})" if measured else "")

    body = [
        [
            f"{r.framework} {r.version}",
            r.weight.words,
            r.bias.words,
            _number(r.weight.std, 4),
            _number(r.gain, 4),
            pair(r.linear[-1], r.measured_linear),
            pair(r.activated[-1], r.measured_activated),
            r.source,
        ]
        for r in rows
    ]
    return head, body


def render_text(rows: Sequence[Row], layer: str, activation: str, n_in: int, n_out: int, depth: int) -> str:
    """A plain-text table (used when ``rich`` is not installed, and in tests)."""
    head, body = table(rows, depth, activation)
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]
    lines = [title(layer, activation, n_in, n_out, depth)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head] + body]
    return "\n".join(lines + [FOOTNOTE])


def render_markdown(rows: Sequence[Row], layer: str, activation: str, n_in: int, n_out: int, depth: int) -> str:
    head, body = table(rows, depth, activation)
    escape = lambda cell: cell.replace("|", "\\|")
    lines = [
        f"**{title(layer, activation, n_in, n_out, depth)}**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(escape(c) for c in line) + " |" for line in body]
    return "\n".join(lines + ["", FOOTNOTE])


def render_csv(rows: Sequence[Row], depth: int) -> str:
    """One line per framework and layer: closed-form and measured Var for both stacks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "framework",
            "version",
            "weight",
            "bias",
            "std_w",
            "fan_in_var_w",
            "layer",
            "var_linear",
            "var_activated",
            "measured_var_linear",
            "measured_var_activated",
            "source",
        ]
    )
    for r in rows:
        for index in range(depth):
            measured = [(m[index] if m else "") for m in (r.measured_linear, r.measured_activated)]
            writer.writerow(
                [
                    r.framework,
                    r.version,
                    r.weight.words,
                    r.bias.words,
                    r.weight.std,
                    r.gain,
                    index + 1,
                    r.linear[index],
                    r.activated[index],
                    *measured,
                    r.source,
                ]
            )
    return out.getvalue()


def document(rows: Sequence[Row], inputs: dict) -> dict:
    """The JSON document: every input (layer, activation, sizes, kernel, heads, seed, frameworks,
    installed versions, polyinit's version) and the rows."""
    import polyinit
    from polyinit.compare_cache import installed_version

    versions = {r.framework: installed_version(r.framework) for r in rows}
    return {"polyinit": polyinit.__version__, "inputs": dict(inputs), "installed": versions, "rows": to_json(rows)}
