"""Evaluate a plan portably over a backend's ``ops`` (see ``polyinit.portable.xp_numpy.Ops`` for
the interface, with numpy's names).

Elementwise plans (one or more iid leaves combined by elementwise ops) are evaluated in flat
chunks of ``CHUNK`` elements (or the backend's own ``Ops.CHUNK``) written straight into the
output, so a draw holds the output plus a few cache-sized temporaries; plans with structure
across elements (blocks, masks by rank, fixed arrays) are evaluated whole. JAX and TensorFlow
evaluate whole; JAX computes every element from its own global index, so a sharded draw computes
only its shard.
"""

from __future__ import annotations

import math
from typing import Any, Optional, TypeAlias

from polyinit import nodes as n
from polyinit.plan import Plan
from polyinit.portable import floats
from polyinit.portable.keys import check_portable, stream_key
from polyinit.portable.threefry import threefry2x32

CHUNK = 1 << 17


def words_range(ops: Any, key: tuple[int, int], leaf: int, start: int, stop: int) -> Any:
    """Words of elements start..stop-1 of leaf ``leaf``: word i % 2 of threefry(key, (i // 2, leaf))."""
    first, last = start >> 1, ((stop - 1) >> 1) + 1
    x0 = ops.iota(first, last - first)
    y0, y1 = threefry2x32(ops, key, x0, ops.full_words(leaf, x0))
    offset = start - 2 * first
    return ops.interleave(y0, y1)[offset : offset + stop - start]


def words_at(ops: Any, key: tuple[int, int], leaf: int, shape: tuple[int, ...]) -> Any:
    """The same words, each computed from its own row-major index (for sharded compiled draws)."""
    index = ops.flat_index(shape)
    y0, y1 = threefry2x32(ops, key, ops.shr(index, 1), ops.full_words(leaf, index))
    return ops.where(ops.band_is_set(index, 1), y1, y0)


def leaf_values(ops: Any, node: n.Node, words: Any) -> Any:
    if isinstance(node, n.Uniform):
        return floats.uniform(ops, words, node.low, node.high)
    if isinstance(node, n.Normal):
        return floats.normal(ops, words, node.mean, node.std)
    if isinstance(node, n.TruncatedNormal):
        return floats.truncated_normal(ops, words, node.mean, node.std, node.a, node.b)
    raise AssertionError(f"not a portable leaf: {node!r}")  # check_portable refused it


# An array of whichever framework the ops draw with (numpy, torch, JAX, TensorFlow or MXNet).
Values: TypeAlias = Any

_COMPARE = {"ge": "greater_equal", "gt": "greater", "le": "less_equal", "lt": "less"}


class _Prims:
    """Node primitives (as in ``nodes.evaluate``) drawing portably; with ``span`` set, leaves and fills give
    only the flat elements span[0]..span[1]-1 (elementwise plans)."""

    def __init__(self, ops: Any, key: tuple[int, int], span: Optional[tuple[int, int]] = None):
        self.ops, self.key, self.span = ops, key, span

    def _shape(self, node: n.Node) -> tuple[int, ...]:
        return node.shape if self.span is None else (self.span[1] - self.span[0],)

    def _leaf(self, node: n.Node, index: int) -> Values:
        fused = getattr(self.ops, "fused_leaf", None)
        if fused is not None and not self.ops.INDEXED:
            start, stop = self.span or (0, math.prod(node.shape))
            values = fused(node, self.key, index, start, stop)
            if values is not None:
                return values if self.span is not None else self.ops.reshape(values, node.shape)
        if self.span is not None:
            words = words_range(self.ops, self.key, index, *self.span)
        elif self.ops.INDEXED:
            words = words_at(self.ops, self.key, index, node.shape)
        else:
            words = self.ops.reshape(words_range(self.ops, self.key, index, 0, math.prod(node.shape)), node.shape)
        return leaf_values(self.ops, node, words)

    Uniform = Normal = TruncatedNormal = _leaf

    def Fill(self, node: n.Fill) -> Values:
        return self.ops.full(self._shape(node), floats.f32(node.value))

    def Fixed(self, node: n.Fixed) -> Values:
        return self.ops.fixed(node.values)

    def Reshape(self, node: n.Reshape, x: Values) -> Values:
        return self.ops.reshape(x, node.shape)

    def Transpose(self, node: n.Transpose, x: Values) -> Values:
        return self.ops.transpose(x, node.perm)

    def Concat(self, node: n.Concat, parts: list[Values]) -> Values:
        return self.ops.concat(parts, node.axis)

    def Scatter(self, node: n.Scatter, x: Values) -> Values:
        return self.ops.scatter(node.shape, node.index, x)

    def Op(self, node: n.Op, args: list[Values]) -> Values:
        ops, name = self.ops, node.name
        if name == "rank":
            return ops.rank(args[0], node.axis)
        if name == "l2_normalize":
            assert node.axis is not None  # built with its axis (plan.py)
            return l2_normalize(ops, args[0], node.axis, node.shape)
        if name in _COMPARE:
            return ops.where(getattr(ops, _COMPARE[name])(*args), 1.0, 0.0, like=args[0])
        if name == "where":
            return ops.where(ops.not_equal(args[0], 0.0), args[1], args[2])
        return getattr(ops, {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}.get(name, name))(*args)


def l2_normalize(ops: Any, x: Values, axis: int, shape: tuple[int, ...]) -> Values:
    """``x / sqrt(sum of squares)`` over each slice along ``axis``, in float32 with one order of
    operations in every framework, so the result is bit-identical: the squares (``fmul``, never
    fused into an add), summed by halves (the first half of the slice plus the second, an odd
    last element carried to the next round, until one sum is left), the square root, its
    reciprocal, and x times the reciprocal; each a correctly rounded IEEE float32 operation.

    >>> import numpy as np
    >>> from polyinit.portable.xp_numpy import Ops
    >>> l2_normalize(Ops(), np.array([[3.0, 4.0]], np.float32), 1, (1, 2))
    array([[0.6, 0.8]], dtype=float32)
    """
    order = (axis,) + tuple(i for i in range(len(shape)) if i != axis)
    moved = ops.transpose(x, order) if axis != 0 else x
    total, count = ops.fmul(moved, moved), shape[axis]
    while count > 1:
        half = count // 2
        summed = ops.fadd(total[:half], total[half : 2 * half])
        total = ops.concat([summed, total[2 * half : count]], 0) if count % 2 else summed
        count = half + count % 2
    # x * (1 / norm), not x / norm: XLA rewrites a division by a broadcast into a product with
    # the broadcast reciprocal, and A / sqrt(B) into A * rsqrt(B), so the quotient of each is
    # spelt out (fmul's guard keeps the root a separate, correctly rounded step).
    norm = ops.fmul(ops.sqrt(total), 1.0)
    unit = ops.fmul(moved, ops.fdiv(1.0, norm))
    return ops.transpose(unit, tuple(order.index(i) for i in range(len(shape)))) if axis != 0 else unit


def _run(node: n.Node, prims: _Prims, leaf_index: dict[int, int], cache: dict[int, Any]) -> Any:
    """``nodes.evaluate`` without its self-referencing closure: that closure is a reference cycle,
    so its cache of intermediate arrays lives until the next garbage collection, and a chunked
    draw would hold every chunk's temporaries (measured: 1.7x the output's bytes, not 1.0x)."""
    if id(node) in cache:
        return cache[id(node)]
    if isinstance(node, n.RANDOM_LEAVES):
        value = getattr(prims, type(node).__name__)(node, leaf_index[id(node)])
    elif isinstance(node, (n.Fill, n.Fixed)):
        value = getattr(prims, type(node).__name__)(node)
    elif isinstance(node, n.Concat):
        value = prims.Concat(node, [_run(c, prims, leaf_index, cache) for c in node.children])
    elif isinstance(node, n.Op):
        value = prims.Op(node, [_run(a, prims, leaf_index, cache) for a in node.args])
    else:
        assert isinstance(node, (n.Reshape, n.Transpose, n.Scatter))  # the only nodes with one child
        value = getattr(prims, type(node).__name__)(node, _run(node.child, prims, leaf_index, cache))
    cache[id(node)] = value
    return value


def is_elementwise(plan: Plan) -> bool:
    return n.flat_copy(plan.root, 1) is not None


def evaluate(ops: Any, plan: Plan, key: tuple[int, int]) -> Any:
    """The whole plan as one float32 array of the plan's shape."""
    return floats.positive_zero(ops, _run(plan.root, _Prims(ops, key), plan.leaf_index, {}))


def evaluate_span(ops: Any, plan: Plan, key: tuple[int, int], start: int, stop: int) -> Any:
    """Flat elements start..stop-1 of an elementwise plan, as float32."""
    return floats.positive_zero(ops, _run(plan.root, _Prims(ops, key, (start, stop)), plan.leaf_index, {}))


def signature(plan: Plan) -> tuple:
    """Everything a portable draw of ``plan`` depends on but its stream key, hashable: a compiling
    backend compiles once per signature."""
    tree, fixed = n.structure(plan.root, plan.leaf_index)
    leaves = tuple((type(leaf).__name__, n._fields(leaf)) for leaf in plan.leaves)
    return tree, leaves, plan.dtype, tuple(f.values.tobytes() for f in fixed)


def fill_fused(ops: Any, plan: Plan, key: tuple[int, int], out: Any, start: int = 0) -> bool:
    """Fill ``out`` with flat elements start.. of a plan that is one random leaf, in one fused
    pass (``Ops.fill_leaf``, see ``polyinit.portable.fused``); False where that cannot be done
    (a plan that combines leaves, no fused kernels, an ``out`` they cannot write)."""
    root, fill = plan.root, getattr(ops, "fill_leaf", None)
    if not isinstance(root, n.RANDOM_LEAVES) or fill is None:
        return False
    return fill(out, root, key, plan.leaf_index[id(root)], start)


def draw(ops: Any, plan: Plan, seed: int, key: str | int, out: Any = None, stream: Any = None) -> Any:
    """The portable draw of ``plan`` in ``ops``' framework and the plan's dtype: chunked into
    ``out`` (or a fresh array) when the backend writes in place and the plan is elementwise.
    ``stream`` (two scalar words) replaces ``stream_key(seed, key)`` inside compiled programs."""
    check_portable(plan, ops.NAME)
    stream = stream_key(seed, key) if stream is None else stream
    if plan.size == 0:
        return ops.zeros(plan.shape, plan.dtype) if out is None else out
    if not ops.CHUNKED or not is_elementwise(plan):
        values = ops.cast(evaluate(ops, plan, stream), plan.dtype)
        return values if out is None else ops.copy_into(out, values)
    out = ops.empty(plan.shape, plan.dtype) if out is None else out
    if fill_fused(ops, plan, stream, out):
        return out  # one fused pass straight into the output
    chunk = getattr(ops, "CHUNK", CHUNK)
    for start in range(0, plan.size, chunk):
        stop = min(start + chunk, plan.size)
        ops.write_flat(out, start, evaluate_span(ops, plan, stream, start, stop))
    return out
