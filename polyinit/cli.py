"""The ``polyinit`` command: ``compare`` (the main job) and ``conformance``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from polyinit.errors import PolyinitError


def _frameworks(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _compare(args: argparse.Namespace) -> int:
    from polyinit.compare import compare, to_json

    rows = compare(layer=args.layer, n_in=args.n_in, n_out=args.n_out, depth=args.depth,
                   kernel=args.kernel, frameworks=args.frameworks, measure=not args.no_measure, seed=args.seed)
    if args.json:
        print(json.dumps({"layer": args.layer, "n_in": args.n_in, "n_out": args.n_out, "depth": args.depth,
                          "rows": to_json(rows)}, indent=2))
    else:
        _print_table(rows, args)
    if args.plot:
        from polyinit.plot import plot

        plot(rows, args.plot, args.layer, args.n_in, args.n_out, args.depth, args.kernel)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_table(rows, args) -> None:
    from polyinit.compare import FOOTNOTE, render_text, table, title

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(render_text(rows, args.layer, args.n_in, args.n_out, args.depth))
        return
    head, body = table(rows, args.depth, sep="\n")
    rich_table = Table(title=title(args.layer, args.n_in, args.n_out, args.depth))
    for name in head:
        rich_table.add_column(name, overflow="fold")
    for cells in body:
        rich_table.add_row(*cells)
    console = Console(width=max(140, Console().width))
    console.print(rich_table)
    console.print(FOOTNOTE)


def _conformance(args: argparse.Namespace) -> int:
    from polyinit.conformance.cli import main

    return main(args.target, backends=args.backends, json_path=args.json, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyinit", description="One init spec, every framework.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="frameworks' defaults side by side, and the signal through depth")
    cmp.add_argument("--layer", choices=("dense", "conv2d"), default="dense")
    cmp.add_argument("--in", dest="n_in", type=int, default=784, help="input units or channels (784)")
    cmp.add_argument("--out", dest="n_out", type=int, default=256, help="output units or channels (256)")
    cmp.add_argument("--kernel", type=int, default=3, help="conv2d kernel size (3)")
    cmp.add_argument("--depth", type=int, default=10, help="layers in the stack (10)")
    cmp.add_argument("--frameworks", type=_frameworks, default=["torch", "keras", "flax", "mxnet", "haiku"])
    cmp.add_argument("--no-measure", action="store_true", help="closed form only; import no framework")
    cmp.add_argument("--plot", metavar="FILE.png", help="draw histograms and variance-through-depth curves")
    cmp.add_argument("--json", action="store_true", help="print JSON instead of the table")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.set_defaults(run=_compare)
    conf = sub.add_parser("conformance", help="check your own specs in every installed backend")
    conf.add_argument("target", help="MODULE:ATTR naming a spec, a list of specs, or a dict name -> spec")
    conf.add_argument("--backends", type=_frameworks, default=None)
    conf.add_argument("--json", metavar="FILE", help="write the results as JSON")
    conf.add_argument("--seed", type=int, default=0)
    conf.set_defaults(run=_conformance)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PolyinitError as error:
        print(f"polyinit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
