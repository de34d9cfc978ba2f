"""``polyinit compare``: each framework's default for one layer, side by side, and what it does to
the signal through a deep stack.

Per layer, Var(y) = n_in sigma_w^2 Var(x) + sigma_b^2 (ReLU halves the second moment it passes on),
so a stack of L layers scales the signal by about (n_in sigma_w^2)^L. The closed form below runs
that recursion exactly with each framework's weight and bias variances: layer 1 maps n_in -> n_out,
layers 2..L map n_out -> n_out (for conv layers n_in counts channels times the kernel's size).
Where the framework is installed, the same stack of its real layers is built with its own
defaults and a standard-normal batch is pushed through, so the two can be read side by side.

>>> rows = compare(frameworks=("torch", "keras"), measure=False)
>>> [round(r.weight.bound, 4) for r in rows]
[0.0357, 0.076]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from polyinit import nodes as n
from polyinit.defaults import FRAMEWORKS, VERSIONS, Param, layer_defaults
from polyinit.errors import PolyinitError


@dataclass(frozen=True)
class Distribution:
    """A parameter's default in words and numbers."""

    words: str
    std: float
    bound: Optional[float]  # |w| <= bound, where the support is bounded
    truncated_at: Optional[float] = None  # in units of the final std


@dataclass
class Row:
    framework: str
    version: str
    weight: Distribution
    bias: Distribution
    gain: float  # n_in sigma_w^2 of the first layer
    linear: list[float]  # closed-form Var after each layer, linear stack
    relu: list[float]
    measured_linear: Optional[list[float]] = None
    measured_relu: Optional[list[float]] = None
    measured: str = "closed form only"
    samples: Optional[list[float]] = field(default=None, repr=False)


def describe(param: Param) -> Distribution:
    """Words and numbers for one parameter's default, e.g. ``U(+-0.0357)``."""
    plan = param.plan()
    node, stats = plan.root, plan.stats
    std = stats.std if stats and stats.std is not None else 0.0
    bound = max(abs(stats.low), abs(stats.high)) if stats and math.isfinite(stats.low) else None
    if isinstance(node, n.Fill):
        return Distribution(f"{node.value:g}", 0.0, abs(node.value))
    if isinstance(node, n.Uniform):
        if node.low == -node.high:
            return Distribution(f"U(+-{node.high:.4g})", std, bound)
        return Distribution(f"U[{node.low:.4g}, {node.high:.4g})", std, bound)
    if isinstance(node, n.Normal):
        return Distribution(f"N(0, {node.std:.4g}^2)", std, None)
    if isinstance(node, n.TruncatedNormal):
        cut = node.b * node.std / std
        return Distribution(f"trunc. normal, std {std:.4g}, cut at +-{cut:.3g} std", std, bound, cut)
    return Distribution(plan.describe(), std, bound)


def _weight_and_bias(framework: str, layer: str, n_in: int, n_out: int, kernel: int) -> tuple[Param, Optional[Param]]:
    if layer == "dense":
        params = list(layer_defaults(framework, "dense", n_in=n_in, n_out=n_out).values())
    elif layer == "conv2d":
        params = list(layer_defaults(framework, "conv", n_in=n_in, n_out=n_out, kernel=(kernel, kernel)).values())
    else:
        raise PolyinitError(f"compare: unknown layer {layer!r}; expected dense or conv2d")
    return params[0], params[1] if len(params) > 1 else None


def closed_form(framework: str, layer: str, n_in: int, n_out: int, depth: int, kernel: int = 3) -> tuple[list[float], list[float], float]:
    """Var after each of ``depth`` layers for linear and ReLU stacks, and the first layer's gain."""
    linear, relu = [], []
    v_lin = v_relu = 1.0
    first_gain = 0.0
    for index in range(depth):
        fan_in = (n_in if index == 0 else n_out) * (kernel * kernel if layer == "conv2d" else 1)
        weight, bias = _weight_and_bias(framework, layer, n_in if index == 0 else n_out, n_out, kernel)
        w_var = weight.plan().stats.var
        b_second = bias.plan().stats.moments[1] if bias is not None else 0.0
        gain = fan_in * w_var
        first_gain = first_gain or gain
        v_lin = gain * v_lin + b_second
        # ReLU passes on E[relu(y)^2] = Var(y) / 2 for a symmetric y; the input is not rectified.
        v_relu = gain * (v_relu if index == 0 else v_relu / 2) + b_second
        linear.append(v_lin)
        relu.append(v_relu)
    return linear, relu, first_gain


def compare(layer: str = "dense", n_in: int = 784, n_out: int = 256, depth: int = 10, kernel: int = 3,
            frameworks: Sequence[str] = FRAMEWORKS, measure: bool = True, seed: int = 0) -> list[Row]:
    """One row per framework: its default weight and bias, the gain, and Var through depth.

    ``measure=True`` also pushes data through real stacks where the framework imports.
    """
    for name, value in (("n_in", n_in), ("n_out", n_out), ("depth", depth), ("kernel", kernel)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PolyinitError(f"compare: {name} must be a positive integer, received {name}={value!r}")
    rows = []
    for framework in frameworks:
        if framework not in FRAMEWORKS:
            raise PolyinitError(f"compare: unknown framework {framework!r}; expected some of {', '.join(FRAMEWORKS)}")
        weight, bias = _weight_and_bias(framework, layer, n_in, n_out, kernel)
        linear, relu, gain = closed_form(framework, layer, n_in, n_out, depth, kernel)
        zero = Distribution("none", 0.0, None)
        row = Row(framework, VERSIONS[framework], describe(weight), describe(bias) if bias else zero, gain, linear, relu)
        if measure:
            from polyinit import measure as measuring

            result = measuring.measure(framework, layer, n_in, n_out, depth, kernel, seed)
            if isinstance(result, str):
                row.measured = result
            else:
                row.measured_linear, row.measured_relu, row.samples = result
                row.measured = "measured on real layers"
        rows.append(row)
    return rows


def to_json(rows: Sequence[Row]) -> list[dict]:
    return [{k: v for k, v in asdict(r).items() if k != "samples"} for r in rows]


def title(layer: str, n_in: int, n_out: int, depth: int) -> str:
    return f"polyinit compare: {layer} {n_in} -> {n_out}, stacks of {depth} layers, input Var 1"


FOOTNOTE = ("Var@L: closed form, and (in brackets) measured by pushing N(0,1) data through a stack of the "
            "real layers where installed. Per layer Var(y) = n_in var(w) Var(x) + var(b); ReLU passes half.")


def table(rows: Sequence[Row], depth: int, sep: str = " ") -> tuple[list[str], list[list[str]]]:
    """The comparison's header and cells; ``sep`` goes between a closed form and its measurement."""
    head = ["framework", "weight", "bias", "std(w)", "n_in*var(w)", f"Var@{depth} linear", f"Var@{depth} ReLU", "source"]

    def pair(closed: float, measured: Optional[list[float]]) -> str:
        return f"{closed:.3g}" + (f"{sep}({measured[-1]:.3g})" if measured else "")

    body = [[f"{r.framework} {r.version}", r.weight.words, r.bias.words, f"{r.weight.std:.4g}", f"{r.gain:.4g}",
             pair(r.linear[-1], r.measured_linear), pair(r.relu[-1], r.measured_relu), r.measured] for r in rows]
    return head, body


def render_text(rows: Sequence[Row], layer: str, n_in: int, n_out: int, depth: int) -> str:
    """A plain-text table (used when ``rich`` is not installed, and in tests)."""
    head, body = table(rows, depth)
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]
    lines = [title(layer, n_in, n_out, depth)] + ["  ".join(c.ljust(w) for c, w in zip(line, widths))
                                                  for line in [head] + body]
    return "\n".join(lines + [FOOTNOTE])
