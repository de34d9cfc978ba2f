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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from polyinit.backends._jax_sharding import run_sharded
from polyinit.plan import Plan
from polyinit.portable import evaluate
from polyinit.portable.keys import check_portable, stream_key

_LOWEST = float(np.finfo(np.float32).min)


def _word(value: "int | Any") -> Any:
    return jnp.uint32(value) if isinstance(value, int) else value


class Ops:
    NAME = "jax"
    CHUNKED = False
    INDEXED = True

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int):
        return lax.iota(jnp.uint32, count) + jnp.uint32(start)

    def full_words(self, value: int, like):
        return jnp.full(like.shape, value, dtype=jnp.uint32)

    def flat_index(self, shape: tuple[int, ...]):
        index = jnp.zeros(shape, jnp.uint32)
        stride = 1
        for axis in reversed(range(len(shape))):
            index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
            stride *= shape[axis]
        return index

    def add(self, a, b):
        return a + _word(b)

    def xor(self, a, b):
        return a ^ _word(b)

    def rotl(self, a, r: int):
        return (a << jnp.uint32(r)) | (a >> jnp.uint32(32 - r))

    def shr(self, a, r: int):
        return a >> jnp.uint32(r)

    def band(self, a, mask: int):
        return a & jnp.uint32(mask)

    def bor(self, a, mask: int):
        return a | jnp.uint32(mask)

    def band_is_set(self, a, mask: int):
        return (a & jnp.uint32(mask)) != 0

    def top_bit(self, a):
        return a >= jnp.uint32(1 << 31)

    def interleave(self, a, b):
        return jnp.stack((a, b), axis=-1).reshape(-1)

    def to_float(self, a):
        return a.astype(jnp.int32).astype(jnp.float32)  # a < 2^31

    def bits(self, x):
        return lax.bitcast_convert_type(x, jnp.uint32)

    def from_bits(self, a):
        return lax.bitcast_convert_type(a, jnp.float32)

    # --- float32 ----------------------------------------------------------------------------
    def fadd(self, a, b):
        return jnp.add(a, b)

    def fsub(self, a, b):
        return jnp.subtract(a, b)

    def fmul(self, a, b):
        return jnp.maximum(jnp.multiply(a, b), _LOWEST)

    def fdiv(self, a, b):
        return jnp.divide(a, b)

    def sqrt(self, a):
        return jnp.sqrt(a)

    def neg(self, a):
        return jnp.negative(a)

    def abs(self, a):
        return jnp.abs(a)

    def minimum(self, a, b):
        return jnp.minimum(a, b)

    def maximum(self, a, b):
        return jnp.maximum(a, b)

    def less(self, a, b):
        return jnp.less(a, b)

    def less_equal(self, a, b):
        return jnp.less_equal(a, b)

    def greater(self, a, b):
        return jnp.greater(a, b)

    def greater_equal(self, a, b):
        return jnp.greater_equal(a, b)

    def not_equal(self, a, b):
        return jnp.not_equal(a, b)

    def where(self, cond, x, y, like: Any = None):
        return jnp.where(cond, x, y).astype(jnp.float32) if isinstance(x, float) else jnp.where(cond, x, y)

    def replace_where(self, mask, base, x, fn):
        return self.where(mask, fn(self, x), base)  # static shapes: every element, then a select

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape, value: float):
        return jnp.full(shape, value, dtype=jnp.float32)

    def fixed(self, values):
        return jnp.asarray(np.asarray(values, dtype=np.float32))

    def reshape(self, x, shape):
        return jnp.reshape(x, shape)

    def transpose(self, x, perm):
        return jnp.transpose(x, perm)

    def concat(self, parts, axis: int):
        return jnp.concatenate(parts, axis=axis)

    def scatter(self, shape, index, x):
        return jnp.zeros(shape, jnp.float32).at[tuple(slice(None) if i is None else i for i in index)].set(x)

    def rank(self, x, axis: int):
        order = jnp.argsort(x, axis=axis, stable=True)
        return jnp.argsort(order, axis=axis, stable=True).astype(jnp.float32)

    def cast(self, x, dtype: str):
        return x.astype(jnp.dtype(dtype))

    def zeros(self, shape, dtype: str):
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
def _draw(static: _Static, stream):
    plan = static.plan
    return evaluate.draw(Ops(), plan, 0, "", stream=(stream[0], stream[1]))


def stream_words(seed: int, key: "str | int"):
    """``stream_key(seed, key)`` as a uint32[2] array (an argument of the compiled draw)."""
    return jnp.asarray(np.array(stream_key(seed, key), dtype=np.uint32))


def draw(plan: Plan, seed: int, key: "str | int" = "", out_sharding: Any = None):
    """The portable draw, laid out as ``out_sharding`` where one is given (each device computing
    only its shard; see ``polyinit.backends._jax_sharding``)."""
    check_portable(plan, "jax")
    if plan.size == 0 or math.prod(plan.shape) == 0:
        return jnp.zeros(plan.shape, jnp.dtype(plan.dtype))
    if out_sharding is None:
        return _draw(_Static(plan), stream_words(seed, key))
    return run_sharded(_draw, _Static(plan), (stream_words(seed, key),), out_sharding, "jax backend, portable draw")
