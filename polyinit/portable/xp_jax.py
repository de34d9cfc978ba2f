"""JAX's ops for portable draws (the interface is ``xp_numpy.Ops``), and the jitted draw.

Words are ``uint32``. Each element's words come from its own row-major index
(``lax.broadcasted_iota``), so under ``jax.jit`` with output shardings XLA partitions the whole
computation elementwise and each device computes only its shard, with the same values.

XLA fuses ``a * b + c`` into one fused multiply-add (on CPU too: measured with jax 0.10.2), so
``fmul`` returns ``maximum(a * b, -FLT_MAX)``: an identity on every finite product, which XLA and
LLVM cannot remove (it maps -inf to -FLT_MAX) and which stands between the product and its add.
``optimization_barrier`` and ``reduce_precision`` do not: XLA drops both here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from polyinit import nodes as n
from polyinit.backends._jax_sharding import run_sharded
from polyinit.plan import Plan
from polyinit.portable import evaluate, floats
from polyinit.portable.keys import check_portable, stream_key
from polyinit.portable.threefry import threefry2x32

_LOWEST = float(np.finfo(np.float32).min)
Array: TypeAlias = jax.Array
Word: TypeAlias = Union[jax.Array, int]  # uint32 words, or one word as a Python int
Float: TypeAlias = Union[jax.Array, float]  # a float32 array, or one float32 number


def _word(value: int | Any) -> Any:
    return jnp.uint32(value) if isinstance(value, int) else value


class Ops:
    NAME = "jax"
    CHUNKED = False
    INDEXED = True

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int) -> Array:
        return lax.iota(jnp.uint32, count) + jnp.uint32(start)

    def full_words(self, value: int, like: Array) -> Array:
        return jnp.full(like.shape, value, dtype=jnp.uint32)

    def flat_index(self, shape: tuple[int, ...]) -> Array:
        index = jnp.zeros(shape, jnp.uint32)
        stride = 1
        for axis in reversed(range(len(shape))):
            index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
            stride *= shape[axis]
        return index

    def add(self, a: Array, b: Word) -> Array:
        return a + _word(b)

    def xor(self, a: Array, b: Word) -> Array:
        return a ^ _word(b)

    def rotl(self, a: Array, r: int) -> Array:
        return (a << jnp.uint32(r)) | (a >> jnp.uint32(32 - r))

    def shr(self, a: Array, r: int) -> Array:
        return a >> jnp.uint32(r)

    def band(self, a: Array, mask: int) -> Array:
        return a & jnp.uint32(mask)

    def bor(self, a: Array, mask: int) -> Array:
        return a | jnp.uint32(mask)

    def band_is_set(self, a: Array, mask: int) -> Array:
        return (a & jnp.uint32(mask)) != 0

    def top_bit(self, a: Array) -> Array:
        return a >= jnp.uint32(1 << 31)

    def interleave(self, a: Array, b: Array) -> Array:
        return jnp.stack((a, b), axis=-1).reshape(-1)

    def to_float(self, a: Array) -> Array:
        return a.astype(jnp.int32).astype(jnp.float32)  # a < 2^31

    def bits(self, x: Array) -> Array:
        return lax.bitcast_convert_type(x, jnp.uint32)

    def from_bits(self, a: Array) -> Array:
        return lax.bitcast_convert_type(a, jnp.float32)

    # --- float32 ----------------------------------------------------------------------------
    def fadd(self, a: Float, b: Float) -> Array:
        return jnp.add(a, b)

    def fsub(self, a: Float, b: Float) -> Array:
        return jnp.subtract(a, b)

    def fmul(self, a: Float, b: Float) -> Array:
        return jnp.maximum(jnp.multiply(a, b), _LOWEST)

    def fdiv(self, a: Float, b: Float) -> Array:
        return jnp.divide(a, b)

    def sqrt(self, a: Array) -> Array:
        return jnp.sqrt(a)

    def neg(self, a: Array) -> Array:
        return jnp.negative(a)

    def abs(self, a: Array) -> Array:
        return jnp.abs(a)

    def minimum(self, a: Float, b: Float) -> Array:
        return jnp.minimum(a, b)

    def maximum(self, a: Float, b: Float) -> Array:
        return jnp.maximum(a, b)

    def less(self, a: Array, b: Float) -> Array:
        return jnp.less(a, b)

    def less_equal(self, a: Array, b: Float) -> Array:
        return jnp.less_equal(a, b)

    def greater(self, a: Array, b: Float) -> Array:
        return jnp.greater(a, b)

    def greater_equal(self, a: Array, b: Float) -> Array:
        return jnp.greater_equal(a, b)

    def not_equal(self, a: Array, b: Float) -> Array:
        return jnp.not_equal(a, b)

    def where(self, cond: Array, x: Float, y: Float, like: Any = None) -> Array:
        return jnp.where(cond, x, y).astype(jnp.float32) if isinstance(x, float) else jnp.where(cond, x, y)

    def replace_where(self, mask: Array, base: Array, x: Array, fn: Callable[[Ops, Array], Array]) -> Array:
        return self.where(mask, fn(self, x), base)  # static shapes: every element, then a select

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape: Sequence[int], value: float) -> Array:
        return jnp.full(shape, value, dtype=jnp.float32)

    def fixed(self, values: Any) -> Array:
        return jnp.asarray(np.asarray(values, dtype=np.float32))

    def reshape(self, x: Array, shape: Sequence[int]) -> Array:
        return jnp.reshape(x, shape)

    def transpose(self, x: Array, perm: Sequence[int]) -> Array:
        return jnp.transpose(x, perm)

    def concat(self, parts: Sequence[Array], axis: int) -> Array:
        return jnp.concatenate(parts, axis=axis)

    def scatter(self, shape: Sequence[int], index: Any, x: Array) -> Array:
        return jnp.zeros(shape, jnp.float32).at[tuple(slice(None) if i is None else i for i in index)].set(x)

    def rank(self, x: Array, axis: int) -> Array:
        order = jnp.argsort(x, axis=axis, stable=True)
        return jnp.argsort(order, axis=axis, stable=True).astype(jnp.float32)

    def cast(self, x: Array, dtype: str) -> Array:
        return x.astype(jnp.dtype(dtype))

    def zeros(self, shape: Sequence[int], dtype: str) -> Array:
        return jnp.zeros(shape, jnp.dtype(dtype))


class _Static:
    """A plan as a static jit argument, hashed and compared by its portable signature."""

    def __init__(self, plan: Plan):
        self.plan, self.key = plan, evaluate.signature(plan)
        self.hash = hash(self.key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self.key == other.key


@functools.partial(jax.jit, static_argnames=("static",))
def _draw(static: _Static, stream: Array) -> Array:
    plan = static.plan
    return evaluate.draw(Ops(), plan, 0, "", stream=(stream[0], stream[1]))


def stream_words(seed: int, key: str | int) -> Array:
    """``stream_key(seed, key)`` as a uint32[2] array (an argument of the compiled draw)."""
    return jnp.asarray(np.array(stream_key(seed, key), dtype=np.uint32))


# --- one program per distribution -------------------------------------------------------------
# Compiling is what a portable draw costs on CPU (about 0.3 s per program here, and a program per
# new shape, spec and dtype). A plan that is one random leaf, of at most SHARED_LIMIT elements,
# is drawn instead by one program per (distribution, dtype) that computes SHARED_CHUNK values at
# flat positions start.. of any leaf, with the leaf's numbers as arguments; the chunks are cut
# and reshaped on the host, which needs no program. Larger leaves get their own program, whose
# compile time their draw outweighs.
SHARED_CHUNK = 1 << 16
SHARED_LIMIT = 1 << 22


def _numbers(node: n.Node) -> tuple[str, np.ndarray]:
    """The program a leaf shares (``uniform``, or ``normal`` for normal and truncated normal) and
    its numbers, float32, as ``_chunk`` reads them: scale, shift, then for a normal whether it is
    truncated (1 or 0), and mirror (1 or 0), a, b, Phi(a), Phi(b) - Phi(a) (``floats.truncation``)."""
    if isinstance(node, n.Uniform):
        return "uniform", np.array([floats.f32(node.high - node.low), floats.f32(node.low)], np.float32)
    assert isinstance(node, (n.Normal, n.TruncatedNormal))  # _shares_program admits random leaves only
    numbers: tuple = (node.std, node.mean, 0.0, 0.0, -math.inf, math.inf, 0.0, 1.0)
    if isinstance(node, n.TruncatedNormal):
        mirror, a, b, p_low, p_width = floats.truncation(node.a, node.b)
        numbers = (node.std, node.mean, 1.0, float(mirror), a, b, p_low, p_width)
    return "normal", np.array([floats.f32(x) for x in numbers], dtype=np.float32)


def _standard_normal(ops: Ops, words: Array, numbers: Array) -> Array:
    """``floats.normal``'s or ``floats.truncated_standard``'s standard value, mirrored, chosen per
    call by ``numbers[2]`` with the same float32 steps: both are +-ndtri_lower(q) of a q in
    (0, 1/2], so one program (one inverse CDF) serves both. The normal's clip to [-inf, inf] and
    its mirror flag 0 are exact identities."""
    truncated, mirror, a, b, p_low, p_width = (numbers[i] for i in range(2, 8))
    q_normal = ops.fmul(ops.fadd(ops.to_float(ops.band(words, 0x7FFFFFFF)), 0.5), 2.0**-32)
    unit = ops.fmul(ops.fadd(ops.to_float(ops.shr(words, 8)), 0.5), 2.0**-24)
    u = ops.fadd(ops.fmul(unit, p_width), p_low)
    u = ops.minimum(ops.maximum(u, floats._SMALLEST_NORMAL), floats._LARGEST_BELOW_ONE)
    lower = ops.less(u, 0.5)
    is_truncated = truncated != 0
    q = jnp.where(is_truncated, ops.where(lower, u, ops.fsub(1.0, u)), q_normal)
    g = floats.ndtri_lower(ops, q)
    positive = jnp.where(is_truncated, jnp.logical_not(lower), ops.top_bit(words))
    z = ops.minimum(ops.maximum(ops.where(positive, ops.neg(g), g), a), b)
    return jnp.where(mirror != 0, ops.neg(z), z)


@functools.partial(jax.jit, static_argnames=("kind", "dtype"))
def _chunk(kind: str, dtype: str, stream: Array, leaf: Word, start: Word, numbers: Array) -> Array:
    """Values start..start+SHARED_CHUNK-1 of leaf ``leaf`` of a ``kind`` distribution: the same
    float32 steps as ``evaluate.leaf_values``, with the numbers as arguments. The affine step is
    always taken: ``x * 1`` and ``x + 0`` are exact on the finite values drawn, and the zero's sign
    is made positive after it, as in every portable draw."""
    ops = Ops()
    index = lax.iota(jnp.uint32, SHARED_CHUNK) + start
    y0, y1 = threefry2x32(ops, (stream[0], stream[1]), ops.shr(index, 1), jnp.full(index.shape, leaf, jnp.uint32))
    words = jnp.where(ops.band_is_set(index, 1), y1, y0)
    z = floats.uniform(ops, words, 0.0, 1.0) if kind == "uniform" else _standard_normal(ops, words, numbers)
    values = ops.fadd(ops.fmul(z, numbers[0]), numbers[1])
    return floats.positive_zero(ops, values).astype(jnp.dtype(dtype))


def _shared_draw(plan: Plan, stream: np.ndarray) -> Array | None:
    """The draw through ``_chunk``; None inside a trace (a user's jit), where the values must stay
    in the traced program and each element is computed from its index in ``_draw`` instead."""
    node = plan.root
    leaf, (kind, numbers) = np.uint32(plan.leaf_index[id(node)]), _numbers(node)
    first = _chunk(kind, plan.dtype, stream, leaf, np.uint32(0), numbers)
    if isinstance(first, jax.core.Tracer):  # traced: nothing more is added to the user's program
        return None
    chunks = [first] + [
        _chunk(kind, plan.dtype, stream, leaf, np.uint32(start), numbers)
        for start in range(SHARED_CHUNK, plan.size, SHARED_CHUNK)
    ]
    host = np.concatenate([np.asarray(chunk) for chunk in chunks])[: plan.size].reshape(plan.shape)
    return jax.device_put(host, chunks[0].sharding)


def _shares_program(plan: Plan) -> bool:
    return isinstance(plan.root, n.RANDOM_LEAVES) and plan.size <= SHARED_LIMIT


def draw(plan: Plan, seed: int, key: str | int = "", out_sharding: Any = None) -> Array:
    """The portable draw, laid out as ``out_sharding`` where one is given (each device computing
    only its shard; see ``polyinit.backends._jax_sharding``)."""
    check_portable(plan, "jax")
    if plan.size == 0 or math.prod(plan.shape) == 0:
        return jnp.zeros(plan.shape, jnp.dtype(plan.dtype))
    if out_sharding is not None:
        return run_sharded(_draw, _Static(plan), (stream_words(seed, key),), out_sharding, "jax backend, portable draw")
    if _shares_program(plan):
        values = _shared_draw(plan, np.array(stream_key(seed, key), dtype=np.uint32))
        if values is not None:
            return values
    return _draw(_Static(plan), stream_words(seed, key))
