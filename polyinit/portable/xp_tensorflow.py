"""TensorFlow's ops for portable draws (the interface is ``xp_numpy.Ops``), for Keras on the
TensorFlow backend.

Words are ``int32`` bit patterns as in torch (TensorFlow's unsigned integer kernels are sparse):
adds wrap modulo 2^32, a logical right shift is the arithmetic one masked. ``fmul`` carries the
same ``maximum(a * b, -FLT_MAX)`` guard as JAX, because under ``jit_compile=True`` XLA fuses
``a * b + c`` into one fused multiply-add (measured, TensorFlow 2.21).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, Union

import numpy as np
import tensorflow as tf

_LOWEST = float(np.finfo(np.float32).min)
Tensor: TypeAlias = tf.Tensor
Word: TypeAlias = Union[tf.Tensor, int]  # a tensor of int32 bit patterns, or one word as a Python int
Float: TypeAlias = Union[tf.Tensor, float]  # a float32 tensor, or one float32 number


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _int(value: int) -> Tensor:
    return tf.constant(_signed(value), dtype=tf.int32)


class Ops:
    NAME = "keras (tensorflow)"
    CHUNKED = False
    INDEXED = False

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int) -> Tensor:
        index = tf.range(start, start + count, dtype=tf.int64)
        return tf.cast(tf.where(index >= 1 << 31, index - (1 << 32), index), tf.int32)

    def full_words(self, value: int, like: Tensor) -> Tensor:
        return tf.fill(tf.shape(like), _int(value))

    def flat_index(self, shape: tuple[int, ...]) -> Tensor:
        return tf.reshape(self.iota(0, int(np.prod(shape))), shape)

    def add(self, a: Tensor, b: Word) -> Tensor:
        return tf.add(a, _int(b) if isinstance(b, int) else b)

    def xor(self, a: Tensor, b: Word) -> Tensor:
        return tf.bitwise.bitwise_xor(a, _int(b) if isinstance(b, int) else b)

    def rotl(self, a: Tensor, r: int) -> Tensor:
        return tf.bitwise.bitwise_or(tf.bitwise.left_shift(a, _int(r)), self.shr(a, 32 - r))

    def shr(self, a: Tensor, r: int) -> Tensor:
        return tf.bitwise.bitwise_and(tf.bitwise.right_shift(a, _int(r)), _int((1 << (32 - r)) - 1))

    def band(self, a: Tensor, mask: int) -> Tensor:
        return tf.bitwise.bitwise_and(a, _int(mask))

    def bor(self, a: Tensor, mask: int) -> Tensor:
        return tf.bitwise.bitwise_or(a, _int(mask))

    def band_is_set(self, a: Tensor, mask: int) -> Tensor:
        return tf.not_equal(self.band(a, mask), 0)

    def top_bit(self, a: Tensor) -> Tensor:
        return tf.less(a, 0)

    def interleave(self, a: Tensor, b: Tensor) -> Tensor:
        return tf.reshape(tf.stack((a, b), axis=1), [-1])

    def to_float(self, a: Tensor) -> Tensor:
        return tf.cast(a, tf.float32)

    def bits(self, x: Tensor) -> Tensor:
        return tf.bitcast(x, tf.int32)

    def from_bits(self, a: Tensor) -> Tensor:
        return tf.bitcast(a, tf.float32)

    # --- float32 ----------------------------------------------------------------------------
    @staticmethod
    def _f(x: Float) -> Tensor:
        return tf.constant(x, tf.float32) if isinstance(x, float) else x

    def fadd(self, a: Float, b: Float) -> Tensor:
        return tf.add(self._f(a), self._f(b))

    def fsub(self, a: Float, b: Float) -> Tensor:
        return tf.subtract(self._f(a), self._f(b))

    def fmul(self, a: Float, b: Float) -> Tensor:
        return tf.maximum(tf.multiply(self._f(a), self._f(b)), _LOWEST)

    def fdiv(self, a: Float, b: Float) -> Tensor:
        return tf.divide(self._f(a), self._f(b))

    def sqrt(self, a: Tensor) -> Tensor:
        return tf.sqrt(a)

    def neg(self, a: Tensor) -> Tensor:
        return tf.negative(a)

    def abs(self, a: Tensor) -> Tensor:
        return tf.abs(a)

    def minimum(self, a: Float, b: Float) -> Tensor:
        return tf.minimum(self._f(a), self._f(b))

    def maximum(self, a: Float, b: Float) -> Tensor:
        return tf.maximum(self._f(a), self._f(b))

    def less(self, a: Tensor, b: Float) -> Tensor:
        return tf.less(a, self._f(b))

    def less_equal(self, a: Tensor, b: Float) -> Tensor:
        return tf.less_equal(a, self._f(b))

    def greater(self, a: Tensor, b: Float) -> Tensor:
        return tf.greater(a, self._f(b))

    def greater_equal(self, a: Tensor, b: Float) -> Tensor:
        return tf.greater_equal(a, self._f(b))

    def not_equal(self, a: Tensor, b: Float) -> Tensor:
        return tf.not_equal(a, self._f(b))

    def where(self, cond: Tensor, x: Float, y: Float, like: Any = None) -> Tensor:
        if isinstance(x, float) or isinstance(y, float):
            x, y = (tf.fill(tf.shape(cond), self._f(v)) if isinstance(v, float) else v for v in (x, y))
        return tf.where(cond, x, y)

    def replace_where(self, mask: Tensor, base: Tensor, x: Tensor, fn: Callable[[Ops, Tensor], Tensor]) -> Tensor:
        return self.where(mask, fn(self, x), base)  # static shapes: every element, then a select

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape: Sequence[int], value: float) -> Tensor:
        return tf.fill(shape, tf.constant(value, tf.float32))

    def fixed(self, values: Any) -> Tensor:
        return tf.constant(np.asarray(values, dtype=np.float32))

    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        return tf.reshape(x, shape)

    def transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        return tf.transpose(x, perm)

    def concat(self, parts: Sequence[Tensor], axis: int) -> Tensor:
        return tf.concat(parts, axis=axis)

    def scatter(self, shape: Sequence[int], index: Any, x: Tensor) -> Tensor:
        # Only DeltaOrthogonal scatters, and portable mode refuses its orthogonal leaf.
        raise AssertionError("unreachable: a Scatter node holds an orthogonal leaf")

    def rank(self, x: Tensor, axis: int) -> Tensor:
        order = tf.argsort(x, axis=axis, stable=True)
        return tf.cast(tf.argsort(order, axis=axis, stable=True), tf.float32)

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        return tf.cast(x, getattr(tf, dtype))

    def zeros(self, shape: Sequence[int], dtype: str) -> Tensor:
        return tf.zeros(shape, getattr(tf, dtype))
