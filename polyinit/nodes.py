"""The primitive set: the only things a backend ever draws or computes.

A plan is a small tree of these nodes with concrete numbers; a backend implements each node kind
natively (a handful of lines each) and never sees a fan, a gain or a scheme name. Random leaves are
numbered in the order ``Plan.leaves`` gives, so keyed backends (JAX, Keras) can split one key per
leaf and sequential ones (numpy, torch) draw in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from polyinit.errors import PolyinitError

Shape = tuple[int, ...]


@dataclass(eq=False, frozen=True)
class Node:
    shape: Shape

    def describe(self) -> str:
        return type(self).__name__.lower()


def _g(x: float) -> str:
    return f"{x:.4g}"


# --- leaves -------------------------------------------------------------------------------


@dataclass(eq=False, frozen=True)
class Fill(Node):
    value: float

    def describe(self) -> str:
        return f"constant({_g(self.value)})"


@dataclass(eq=False, frozen=True)
class Fixed(Node):
    """Deterministic values (identity, dirac, bilinear), computed on demand from a small recipe so
    a cached plan never pins a large array; ``low``/``high`` are their least and greatest."""

    recipe: Callable[[], np.ndarray] = field(repr=False)
    low: float
    high: float
    name: str = "fixed"

    @property
    def values(self) -> np.ndarray:
        return self.recipe()

    def describe(self) -> str:
        return self.name


@dataclass(eq=False, frozen=True)
class Uniform(Node):
    """U[low, high)."""

    low: float
    high: float

    def describe(self) -> str:
        return f"uniform({_g(self.low)}, {_g(self.high)})"


@dataclass(eq=False, frozen=True)
class Normal(Node):
    mean: float
    std: float

    def describe(self) -> str:
        return f"normal(mean={_g(self.mean)}, std={_g(self.std)})"


@dataclass(eq=False, frozen=True)
class TruncatedNormal(Node):
    """``mean + std * z`` with z ~ N(0, 1) cut to [a, b] (standard units), by inverse CDF with
    the uniform kept inside the open interval, so no value reaches a bound through rounding."""

    mean: float
    std: float
    a: float
    b: float

    def describe(self) -> str:
        lo, hi = self.mean + self.a * self.std, self.mean + self.b * self.std
        return (
            f"truncated_normal(mean={_g(self.mean)}, std0={_g(self.std)}, "
            f"[{_g(lo)}, {_g(hi)}] = [{_g(self.a)}, {_g(self.b)}] std0)"
        )


@dataclass(eq=False, frozen=True)
class OrthogonalMatrix(Node):
    """A Haar-random (rows, cols) matrix with orthonormal rows or columns, times gain: QR of a
    standard normal (max, min) matrix with the sign of diag(R) folded in, transposed if rows < cols."""

    gain: float

    def describe(self) -> str:
        return f"orthogonal({self.shape[0]}x{self.shape[1]}, gain={_g(self.gain)})"


# --- structure ----------------------------------------------------------------------------


@dataclass(eq=False, frozen=True)
class Reshape(Node):
    child: Node

    def describe(self) -> str:
        return self.child.describe()


@dataclass(eq=False, frozen=True)
class Transpose(Node):
    child: Node
    perm: tuple[int, ...]

    def describe(self) -> str:
        return self.child.describe()


@dataclass(eq=False, frozen=True)
class Concat(Node):
    axis: int
    children: tuple[Node, ...]

    def describe(self) -> str:
        return "blocks[" + ", ".join(c.describe() for c in self.children) + "]"


@dataclass(eq=False, frozen=True)
class Scatter(Node):
    """Zeros of ``shape`` with ``child`` written at ``index`` (ints pick, None keeps an axis)."""

    child: Node
    index: tuple[Optional[int], ...]

    def describe(self) -> str:
        return f"zeros with {self.child.describe()} at the centre"


@dataclass(eq=False, frozen=True)
class Op(Node):
    """Elementwise op on same-shape args: add sub mul div minimum maximum ge gt le lt neg abs
    where; and two ops along ``axis`` (``ALONG_AXIS``): ``rank`` (0-based rank of each element,
    for exact-count masks) and ``l2_normalize`` (x / ||x||_2 over each slice along the axis)."""

    name: str
    args: tuple[Node, ...]
    axis: Optional[int] = None

    def describe(self) -> str:
        return f"{self.name}(" + ", ".join(a.describe() for a in self.args) + ")"


RANDOM_LEAVES = (Uniform, Normal, TruncatedNormal, OrthogonalMatrix)
# Ops whose value at an element depends on the other elements along ``Op.axis``.
ALONG_AXIS = ("rank", "l2_normalize")


def op_table(xp: Any, cast: Callable[[Any, Any], Any]) -> dict:
    """The elementwise ``Op`` names over an array namespace with numpy's names (numpy,
    ``jax.numpy``, ``torch`` and ``keras.ops`` all have them); ``cast(mask, like)`` turns a
    comparison's booleans into 1.0/0.0 of ``like``'s dtype."""

    def compare(fn):
        return lambda a, b: cast(fn(a, b), a)

    return {
        "add": xp.add,
        "sub": xp.subtract,
        "mul": xp.multiply,
        "div": xp.divide,
        "minimum": xp.minimum,
        "maximum": xp.maximum,
        "neg": xp.negative,
        "abs": xp.abs,
        "ge": compare(xp.greater_equal),
        "gt": compare(xp.greater),
        "le": compare(xp.less_equal),
        "lt": compare(xp.less),
        "where": lambda c, x, y: xp.where(xp.not_equal(c, 0), x, y),
    }


# numpy's op table, for the plan's own evaluations (quadrature of an expression's moments).
_NUMPY_OPS = op_table(np, lambda mask, like: mask.astype(np.result_type(like)))


def elementwise(root: Node, values: dict[int, np.ndarray]) -> np.ndarray:
    """Evaluate an elementwise expression in numpy with given leaf values (``values`` maps a
    leaf's id to its array; constants broadcast): the plan integrates an expression over its
    leaf's density this way, without any backend.

    >>> leaf = Uniform((3,), 0.0, 1.0)
    >>> elementwise(Op((3,), "mul", (leaf, Fill((3,), 2.0))), {id(leaf): np.array([0.0, 0.5, 1.0])})
    array([0., 1., 2.])
    """
    if id(root) in values:
        return values[id(root)]
    if isinstance(root, Fill):
        return np.asarray(root.value, dtype=np.float64)
    if isinstance(root, Op) and root.name not in ALONG_AXIS:
        return _NUMPY_OPS[root.name](*(elementwise(a, values) for a in root.args))
    raise PolyinitError(f"elementwise: cannot integrate over {root.describe()}")


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Reshape, Transpose, Scatter)):
        return (node.child,)
    if isinstance(node, Concat):
        return node.children
    if isinstance(node, Op):
        return node.args
    return ()


def random_leaves(root: Node) -> tuple[Node, ...]:
    """Random leaves in depth-first, left-to-right order of first visit; shared nodes once."""
    seen: set[int] = set()
    order: list[Node] = []

    def visit(node: Node) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, RANDOM_LEAVES):
            order.append(node)
        for child in children(node):
            visit(child)

    visit(root)
    return tuple(order)


_ELEMENTWISE = (Fill, Uniform, Normal, TruncatedNormal)


def _fields(node: Node) -> tuple:
    """A node's numbers and settings: every field but its shape and its child nodes."""
    return tuple(
        getattr(node, f) for f in node.__dataclass_fields__ if f not in ("shape", "child", "children", "args", "recipe")
    )


def flat_copy(root: Node, size: int) -> Node | None:
    """The same elementwise-iid tree drawing ``size`` values as a flat vector, or None when the
    plan has structure across elements (orthogonal, blocks, rank masks, fixed arrays)."""
    copies: dict[int, Node | None] = {}

    def copy(node: Node) -> Node | None:
        if id(node) not in copies:
            if isinstance(node, _ELEMENTWISE):
                copies[id(node)] = type(node)((size,), *_fields(node))
            elif isinstance(node, Op) and node.name not in ALONG_AXIS:
                args = [copy(a) for a in node.args]
                whole = [a for a in args if a is not None]
                copies[id(node)] = Op((size,), node.name, tuple(whole)) if len(whole) == len(args) else None
            else:
                copies[id(node)] = None
        return copies[id(node)]

    return copy(root)


def elementwise_key(root: Node) -> tuple | None:
    """A hashable description of an elementwise-iid tree that leaves out its shape (so draws of
    one expression at any shape share it), or None when the tree has structure across elements.
    A random leaf used twice keeps one number: it is one random variable, not two."""
    flat = flat_copy(root, 1)
    if flat is None:
        return None
    leaves = random_leaves(flat)
    key, _ = structure(flat, {id(leaf): i for i, leaf in enumerate(leaves)})
    return key, tuple(_fields(leaf) for leaf in leaves)


def structure(root: Node, leaf_index: dict[int, int]) -> tuple[tuple, list[Fixed]]:
    """(key, fixed): a hashable description of the whole tree with every shape and number, in
    which random leaves appear by their number in ``leaf_index`` and Fixed arrays by their place
    in ``fixed`` (the values of both come from elsewhere). Equal keys mean the same computation on
    the same inputs, so a backend that compiles (JAX) can compile once per key."""
    fixed: list[Fixed] = []
    places: dict[int, int] = {}

    def key(node: Node) -> tuple:
        if isinstance(node, RANDOM_LEAVES):
            return ("leaf", node.shape, leaf_index[id(node)])
        if isinstance(node, Fixed):
            if id(node) not in places:
                places[id(node)] = len(fixed)
                fixed.append(node)
            return ("fixed", node.shape, places[id(node)])
        return (type(node).__name__, node.shape, _fields(node), tuple(key(c) for c in children(node)))

    return key(root), fixed


def evaluate(root: Node, prims: Any, leaf_index: dict[int, int]) -> Any:
    """Evaluate a plan tree with a backend's primitives, each shared node once.

    ``prims`` has one method per node kind (see ``polyinit.backends.numpy.Primitives``); random
    methods get the leaf's number so keyed backends can pick the key.
    """
    cache: dict[int, object] = {}

    def run(node: Node) -> object:
        key = id(node)
        if key in cache:
            return cache[key]
        if isinstance(node, RANDOM_LEAVES):
            method = getattr(prims, type(node).__name__)
            value = method(node, leaf_index[id(node)])
        elif isinstance(node, Fill):
            value = prims.Fill(node)
        elif isinstance(node, Fixed):
            value = prims.Fixed(node)
        elif isinstance(node, Concat):
            value = prims.Concat(node, [run(c) for c in node.children])
        elif isinstance(node, Op):
            value = prims.Op(node, [run(a) for a in node.args])
        else:
            assert isinstance(node, (Reshape, Transpose, Scatter))  # the only nodes with one child
            value = getattr(prims, type(node).__name__)(node, run(node.child))
        cache[key] = value
        return value

    return run(root)
