"""Where a plan's values can lie, by interval arithmetic over its nodes: the finiteness guard.

``resolve`` calls ``check_finite`` on every plan before it hands it out, so no backend ever
writes an inf or a NaN that the spec could have predicted:

* a divisor whose support reaches 0 (``Normal() / 0``, ``1 / Uniform(low=-1, high=1)``,
  ``x / (mask >= 0.5)``) is refused, naming the divisor and its support;
* a value, or an intermediate result, beyond the largest finite number of the dtype it is
  computed in (float32 for float16/bfloat16/float32 plans, float64 for float64) is refused, and so
  is a final value beyond the target dtype's range (``Uniform(low=-1e5, high=1e5)`` in float16).

Each node gets two intervals: its *support* (exact hull of the values it can take, infinite for a
normal) and its *reach* (a finite over-estimate of the magnitudes actually produced: a normal
reaches at most ``NORMAL_REACH`` standard deviations, far beyond any generator's tail). The walk
is iterative, so it needs no recursion whatever the depth.

>>> from polyinit import Normal, resolve
>>> resolve(Normal() / 0, (3,))
Traceback (most recent call last):
...
polyinit.errors.NonFiniteError: resolve: ... the divisor constant(0) has support [0, 0], which contains 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from polyinit import nodes as n
from polyinit.errors import NonFiniteError

# No normal generator in use reaches 40 standard deviations (float64 tails end near 9.4 sigma).
NORMAL_REACH = 40.0
LARGEST = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": 3.4028234663852886e38,
    "float64": 1.7976931348623157e308,
}
# Unit roundoff (half an ulp at 1) of each dtype.
_EPS = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}
_SUBNORMAL_STEP = {"float16": 2.0**-24, "bfloat16": 2.0**-133, "float32": 2.0**-149, "float64": 5e-324}


@dataclass(frozen=True)
class Interval:
    """The closed interval [low, high]; either end may be infinite."""

    low: float
    high: float

    @property
    def magnitude(self) -> float:
        return max(abs(self.low), abs(self.high))

    def has_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def __str__(self) -> str:
        return f"[{self.low:.4g}, {self.high:.4g}]"


def _hull(*parts: Interval) -> Interval:
    return Interval(min(p.low for p in parts), max(p.high for p in parts))


@dataclass(frozen=True)
class Bounds:
    """What the guard knows of one node: ``support`` (exact hull), ``reach`` (finite hull of what
    generators produce) and ``slack`` (a bound on the rounding error of the computed values, so a
    divisor or a comparison that sits exactly on 0 or on its threshold is not trusted to stay there).
    """

    support: Interval
    reach: Interval
    slack: float


def _times(x: float, y: float) -> float:
    return 0.0 if x == 0.0 or y == 0.0 else x * y  # 0 * inf is 0 for bounds


def _mul(a: Interval, b: Interval) -> Interval:
    ends = [_times(x, y) for x in (a.low, a.high) for y in (b.low, b.high)]
    return Interval(min(ends), max(ends))


def _abs(a: Interval) -> Interval:
    if a.low >= 0:
        return a
    if a.high <= 0:
        return Interval(-a.high, -a.low)
    return Interval(0.0, max(-a.low, a.high))


def _compare(name: str, a: Interval, b: Interval, margin: float) -> Interval:
    """1.0 where the comparison holds, else 0.0; a single value only when the supports decide it
    by more than the rounding ``margin``."""
    if name in ("le", "lt"):
        a, b, name = b, a, "ge" if name == "le" else "gt"
    strict = name == "gt"
    always = a.low - b.high > margin if strict else a.low - b.high >= margin
    never = b.low - a.high >= margin if strict else b.low - a.high > margin
    return Interval(1.0, 1.0) if always else Interval(0.0, 0.0) if never else Interval(0.0, 1.0)


def _op(node: n.Op, args: list[Interval], margin: float) -> Interval:
    name = node.name
    if name == "add":
        return Interval(args[0].low + args[1].low, args[0].high + args[1].high)
    if name == "sub":
        return Interval(args[0].low - args[1].high, args[0].high - args[1].low)
    if name == "mul":
        return _mul(args[0], args[1])
    if name == "div":  # the divisor excludes 0 here (checked on the supports first)
        d = args[1]
        return _mul(args[0], Interval(1.0 / d.high, 1.0 / d.low))
    if name in ("minimum", "maximum"):
        pick = min if name == "minimum" else max
        return Interval(pick(args[0].low, args[1].low), pick(args[0].high, args[1].high))
    if name == "neg":
        return Interval(-args[0].high, -args[0].low)
    if name == "abs":
        return _abs(args[0])
    if name in ("ge", "gt", "le", "lt"):
        return _compare(name, args[0], args[1], margin)
    if name == "where":
        condition, if_true, if_false = args
        if condition.low > margin or condition.high < -margin:
            return if_true
        if condition.low == condition.high == 0.0:
            return if_false
        return _hull(if_true, if_false)
    if name == "rank":
        assert node.axis is not None  # a rank op always names its axis
        return Interval(0.0, float(node.shape[node.axis] - 1))
    if name == "l2_normalize":  # each value is one coordinate of a unit vector, with its sign
        return Interval(-1.0 if args[0].low < 0 else 0.0, 1.0 if args[0].high > 0 else 0.0)
    raise NonFiniteError(f"support: unknown op {name!r}")  # pragma: no cover - nodes.Op names are fixed


def _leaf(node: n.Node) -> tuple[Interval, Interval]:
    """(support, reach) of a leaf."""
    if isinstance(node, n.Fill):
        point = Interval(node.value, node.value)
        return point, point
    if isinstance(node, n.Fixed):
        values = Interval(node.low, node.high)
        return values, values
    if isinstance(node, n.Uniform):
        values = Interval(node.low, node.high)
        return values, values
    if isinstance(node, n.Normal):
        spread = NORMAL_REACH * node.std
        return Interval(-math.inf, math.inf), Interval(node.mean - spread, node.mean + spread)
    if isinstance(node, n.TruncatedNormal):
        support = Interval(
            node.mean + node.a * node.std if math.isfinite(node.a) else -math.inf,
            node.mean + node.b * node.std if math.isfinite(node.b) else math.inf,
        )
        spread = NORMAL_REACH * node.std
        reach = Interval(max(support.low, node.mean - spread), min(support.high, node.mean + spread))
        return support, reach
    if isinstance(node, n.OrthogonalMatrix):
        values = Interval(-abs(node.gain), abs(node.gain))
        return values, values
    raise NonFiniteError(f"support: unknown leaf {type(node).__name__}")  # pragma: no cover


def _combine(node: n.Node, kids: list[Bounds], owner: str, eps: float) -> Bounds:
    supports = [k.support for k in kids]
    reaches = [k.reach for k in kids]
    if isinstance(node, (n.Reshape, n.Transpose)):
        return kids[0]
    if isinstance(node, n.Concat):
        return Bounds(_hull(*supports), _hull(*reaches), max(k.slack for k in kids))
    if isinstance(node, n.Scatter):
        zero = Interval(0.0, 0.0)
        return Bounds(_hull(supports[0], zero), _hull(reaches[0], zero), kids[0].slack)
    assert isinstance(node, n.Op)
    margin = sum(k.slack for k in kids)
    if node.name == "div":
        d, slack = supports[1], kids[1].slack
        if d.low - slack <= 0.0 <= d.high + slack:
            raise NonFiniteError(
                f"{owner} cannot be drawn with finite values: the divisor "
                f"{_short(node.args[1].describe())} has support {d}, which contains 0"
                + ("" if d.has_zero() else f" within rounding ({slack:.3g})")
            )
    reach = _op(node, reaches, margin)
    return Bounds(_op(node, supports, margin), reach, _error(node.name, kids, reach, eps))


def _error(name: str, kids: list[Bounds], reach: Interval, eps: float) -> float:
    """First-order bound on the absolute rounding error of an op's computed value: its operands'
    errors carried through the op, plus one rounding of the result."""
    errors = [k.slack for k in kids]
    own = eps * reach.magnitude
    if name in ("add", "sub"):
        return errors[0] + errors[1] + own
    if name == "mul":
        (a, b), (ea, eb) = (kids[0].reach.magnitude, kids[1].reach.magnitude), errors
        return a * eb + b * ea + ea * eb + own
    if name == "div":
        d = kids[1].reach
        nearest = (d.low if d.low > 0 else -d.high) - errors[1]  # > 0: checked before
        return (errors[0] + kids[0].reach.magnitude * errors[1] / nearest) / nearest + own
    if name in ("ge", "gt", "le", "lt", "rank"):
        return 0.0  # exactly 0 or 1 (or a rank); a flip near the threshold is in the interval
    if name == "l2_normalize":
        # Values within 1: a sum of m squares by halves rounds log2 m <= 32 times, then the root
        # and the division once each; the operand's own rounding moves the direction a few eps.
        return 40 * eps
    if name == "where":
        return max(errors[1], errors[2])
    return max(errors)  # minimum, maximum, neg, abs: no rounding of their own


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def intervals(root: n.Node, dtype: str = "float64", owner: str = "resolve") -> dict[int, Bounds]:
    """``Bounds`` of every node of the tree, by id, computed bottom-up without recursion, for a
    plan computed in ``dtype``'s working precision. Raises ``NonFiniteError`` for a divisor whose
    support (widened by its rounding error) contains 0."""
    eps = _EPS["float64" if dtype == "float64" else "float32"]
    found: dict[int, Bounds] = {}
    stack: list[tuple[n.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in found:
            continue
        kids = n.children(node)
        if not kids:
            support, reach = _leaf(node)
            # A draw rounds a few times (scale, shift, inverse CDF): a few units of the magnitude.
            found[id(node)] = Bounds(support, reach, 4 * eps * reach.magnitude)
        elif expanded:
            found[id(node)] = _combine(node, [found[id(k)] for k in kids], owner, eps)
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids) if id(k) not in found)
    return found


def check_finite(root: n.Node, dtype: str, owner: str = "resolve") -> Interval:
    """Refuse a tree that could produce a non-finite value in ``dtype``; return the root's support.

    Intermediate results are computed in float64 for float64 plans and in float32 otherwise
    (every backend does at least that), so they are held to that range; the final values to the
    target dtype's.
    """
    found = intervals(root, dtype, owner)
    nodes = _nodes(root)
    compute = "float64" if dtype == "float64" else "float32"
    limit = LARGEST[compute]
    for node_id, bounds in found.items():
        node = nodes[node_id]
        # A uniform draw computes low + (high - low) u: its width must be finite too.
        width = node.high - node.low if isinstance(node, n.Uniform) else 0.0
        if not max(bounds.reach.magnitude, width) <= limit:
            raise NonFiniteError(
                f"{owner} cannot be drawn with finite values: "
                f"{_short(node.describe())} reaches {bounds.reach.magnitude:.4g}, beyond "
                f"{compute}'s largest finite value {limit:.4g}"
            )
    root_bounds = found[id(root)]
    if not root_bounds.reach.magnitude <= LARGEST[dtype]:
        raise NonFiniteError(
            f"{owner} cannot be drawn with finite values in {dtype}: its values "
            f"reach {root_bounds.reach.magnitude:.4g}, beyond {dtype}'s largest finite "
            f"value {LARGEST[dtype]:.4g}"
        )
    return root_bounds.support


def rounding_allowance(root: n.Node, dtype: str) -> float:
    """How far computed values may stray outside the root's exact support through rounding in
    ``dtype``'s working precision (plus the final cast), for checks of drawn values."""
    bounds = intervals(root, dtype)[id(root)]
    # The final cast rounds relative to the value, or by a subnormal step near 0.
    return bounds.slack + 2 * _EPS[dtype] * bounds.reach.magnitude + _SUBNORMAL_STEP[dtype]


def _nodes(root: n.Node) -> dict[int, n.Node]:
    """Every node of the tree by id, without recursion."""
    found: dict[int, n.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in found:
            found[id(node)] = node
            stack.extend(n.children(node))
    return found
