"""The ``polyinit`` command: ``compare`` (the main job) and ``conformance``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional

from polyinit.errors import PolyinitError

if TYPE_CHECKING:  # typing only: compare is imported when the command runs
    from polyinit.compare import Row


def _frameworks(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _check_plot_path(path: str) -> None:
    """Refuse an unwritable --plot target before minutes of measuring, not after."""
    folder = os.path.dirname(os.path.abspath(path))
    if not path.lower().endswith(".png"):
        raise PolyinitError(f"compare: --plot {path!r} must name a .png file")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise PolyinitError(f"compare: --plot {path!r}: folder {folder!r} does not exist or is not writable")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PolyinitError("compare: --plot needs matplotlib: pip install 'polyinit[compare]'") from None


def _progress(args: argparse.Namespace) -> Optional[Callable[[str], None]]:
    """Progress lines on stderr when it is a terminal, or when --progress asks."""
    if not (args.progress or sys.stderr.isatty()):
        return None
    return lambda text: print(f"polyinit: {text}", file=sys.stderr, flush=True)


def _compare(args: argparse.Namespace) -> int:
    if args.plot:
        _check_plot_path(args.plot)
    if args.scheme and not args.model:
        raise PolyinitError("compare --scheme shows a scheme on your model: it needs --model MODULE:FACTORY")
    if args.model:
        from polyinit.compare_model import compare_model, render

        result = compare_model(
            args.model,
            frameworks=args.frameworks,
            seed=args.seed,
            measure=not args.no_measure,
            progress=_progress(args),
            schemes=args.scheme or (),
        )
        fmt = "json" if args.json else args.format
        print(json.dumps(result.as_json(), indent=2) if fmt == "json" else render(result, fmt))
        return 0
    from polyinit import compare_output as output
    from polyinit.compare import DEFAULT_SIZES, compare

    n_in, n_out = (args.n_in, args.n_out)
    default_in, default_out = DEFAULT_SIZES.get(args.layer, (784, 256))
    n_in, n_out = default_in if n_in is None else n_in, default_out if n_out is None else n_out
    rows = compare(
        layer=args.layer,
        n_in=n_in,
        n_out=n_out,
        depth=args.depth,
        kernel=args.kernel,
        frameworks=args.frameworks,
        measure=not args.no_measure,
        seed=args.seed,
        activation=args.activation,
        heads=args.heads,
        progress=_progress(args),
        cache=not args.no_cache,
    )
    fmt = "json" if args.json else args.format
    shape = (args.layer, args.activation, n_in, n_out, args.depth)
    if fmt == "json":
        from polyinit.measure import REPEATS, TOKENS

        inputs = dict(
            layer=args.layer,
            activation=args.activation,
            n_in=n_in,
            n_out=n_out,
            depth=args.depth,
            kernel=args.kernel,
            heads=args.heads,
            tokens=TOKENS,
            seed=args.seed,
            frameworks=list(args.frameworks),
            measure=not args.no_measure,
            repeats=REPEATS,
        )
        print(json.dumps(output.document(rows, inputs), indent=2))
    elif fmt == "markdown":
        print(output.render_markdown(rows, *shape))
    elif fmt == "csv":
        print(output.render_csv(rows, args.depth), end="")
    else:
        _print_table(rows, shape)
    if args.plot:
        from polyinit.plot import plot

        plot(rows, args.plot, args.layer, args.activation, n_in, n_out, args.depth)
        print(f"wrote {args.plot}", file=sys.stderr if fmt != "table" else sys.stdout)
    return 0


def _print_table(rows: Sequence[Row], shape: tuple[str, str, int, int, int]) -> None:
    from polyinit import compare_output as output

    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        has_rich = False
    else:
        has_rich = True
    if not has_rich or not sys.stdout.isatty():  # a pipe or a file: plain lines, never wrapped
        print(output.render_text(rows, *shape))
        return
    head, body = output.table(rows, shape[-1], shape[1], sep="\n")
    rich_table = Table(title=escape(output.title(*shape)))
    for name in head:
        rich_table.add_column(escape(name), overflow="fold")
    for cells in body:
        rich_table.add_row(*map(escape, cells))
    console = Console()  # the terminal's own width ($COLUMNS where set)
    console.print(rich_table)
    console.print(escape(output.FOOTNOTE))


def _conformance(args: argparse.Namespace) -> int:
    from polyinit._validate import seed
    from polyinit.conformance.cli import main

    seed("conformance", args.seed)

    return main(args.target, backends=args.backends, json_path=args.json, seed=args.seed, progress=_progress(args))


def build_parser() -> argparse.ArgumentParser:
    from polyinit import __version__

    parser = argparse.ArgumentParser(prog="polyinit", description="One init spec, every framework.")
    parser.add_argument("--version", action="version", version=f"polyinit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from polyinit.defaults import FRAMEWORKS
    from polyinit.propagation import ACTIVATIONS, KINDS

    cmp = sub.add_parser(
        "compare",
        help="frameworks' defaults side by side, and the signal through depth",
        description="Each framework's default initialisation of one layer kind (or of your own "
        "model with --model), and the signal's variance through a stack of such layers: "
        "closed form, and measured on the real layers of every installed framework.",
    )
    cmp.add_argument("--layer", choices=KINDS, default="dense", help="layer kind: %(choices)s (default dense)")
    cmp.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="relu",
        help="between layers: %(choices)s (default relu; GELU is the exact erf form)",
    )
    cmp.add_argument(
        "--in",
        dest="n_in",
        type=int,
        default=None,
        help="input units, channels, vocabulary (embedding) or d_model (mha); default per layer, 784 for dense",
    )
    cmp.add_argument(
        "--out", dest="n_out", type=int, default=None, help="output units or channels; default per layer, 256 for dense"
    )
    cmp.add_argument("--kernel", type=int, default=3, help="conv kernel size per axis (3)")
    cmp.add_argument("--heads", type=int, default=4, help="mha heads (4)")
    cmp.add_argument("--depth", type=int, default=10, help="layers in the stack (10)")
    cmp.add_argument(
        "--frameworks",
        type=_frameworks,
        default=list(FRAMEWORKS),
        help=f"comma-separated, some of: {', '.join(FRAMEWORKS)} (default all)",
    )
    cmp.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="compare on your own model: FACTORY() returns a torch, Keras, Flax nnx or Gluon model, "
        "or (model, input_shape) to measure the signal through it",
    )
    from polyinit.compare_model import SCHEMES

    cmp.add_argument(
        "--scheme",
        action="append",
        choices=SCHEMES,
        metavar="SCHEME",
        help="with --model: also show this modern scheme's per-parameter draw (polyinit.modern), "
        f"repeatable; one of {', '.join(SCHEMES)}",
    )
    cmp.add_argument("--no-measure", action="store_true", help="closed form only; import no framework")
    cmp.add_argument(
        "--no-cache",
        action="store_true",
        help="measure again instead of reading the cache "
        "($POLYINIT_CACHE, else $XDG_CACHE_HOME/polyinit, else ~/.cache/polyinit)",
    )
    cmp.add_argument(
        "--progress",
        action="store_true",
        help="report each framework's import and measurement on stderr even when it is not a terminal",
    )
    cmp.add_argument(
        "--plot", metavar="FILE.png", help="draw weight and bias histograms and variance-through-depth curves"
    )
    cmp.add_argument(
        "--format",
        choices=("table", "json", "markdown", "csv"),
        default="table",
        help="output: %(choices)s (default table)",
    )
    cmp.add_argument("--json", action="store_true", help="same as --format json")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.set_defaults(run=_compare)
    from polyinit.backends import REGISTRY

    conf = sub.add_parser(
        "conformance",
        help="check your own specs in every installed backend",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check specs against every installed backend's draws (closed-form statistics).",
        epilog="Your own initializer: in a dict, give (spec, fn) or (spec, fn, layout), where\n"
        "fn(shape, seed) -> array; it is checked as one more backend, 'yours', against\n"
        "what the spec promises (layout defaults to polyinit.OUT_IN). Example:\n"
        "    SPECS = {'mine': (polyinit.glorot_uniform(), my_glorot)}\n"
        "    polyinit conformance my_module:SPECS",
    )
    conf.add_argument(
        "target",
        help="MODULE:ATTR naming a spec, a list of specs, or a dict name -> spec "
        "or -> (spec, fn[, layout]) for your own fn(shape, seed)",
    )
    conf.add_argument(
        "--backends",
        type=_frameworks,
        default=None,
        metavar="NAMES",
        help=f"comma-separated, some of: {', '.join(REGISTRY)} (default: every installed one)",
    )
    conf.add_argument(
        "--progress", action="store_true", help="report each backend and spec on stderr even when it is not a terminal"
    )
    conf.add_argument("--json", metavar="FILE", help="write the results as JSON")
    conf.add_argument("--seed", type=int, default=0)
    conf.set_defaults(run=_conformance)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from polyinit import native_logs

    native_logs.hide_unless_user_set()  # compare's first lines are polyinit's, not TensorFlow's
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PolyinitError as error:
        print(f"polyinit: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped (``polyinit compare | head``): it asked for no more, so no traceback,
        # and stdout goes to devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
