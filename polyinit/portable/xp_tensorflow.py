"""TensorFlow's ops for portable draws (the interface is ``xp_numpy.Ops``), for Keras on the
TensorFlow backend.

Words are ``int32`` bit patterns as in torch (TensorFlow's unsigned integer kernels are sparse):
adds wrap modulo 2^32, a logical right shift is the arithmetic one masked. ``fmul`` carries the
same ``maximum(a * b, -FLT_MAX)`` guard as JAX, because under ``jit_compile=True`` XLA fuses
``a * b + c`` into one fused multiply-add (measured, TensorFlow 2.21).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

_LOWEST = float(np.finfo(np.float32).min)


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _int(value: int):
    return tf.constant(_signed(value), dtype=tf.int32)


class Ops:
    NAME = "keras (tensorflow)"
    CHUNKED = False
    INDEXED = False

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int):
        index = tf.range(start, start + count, dtype=tf.int64)
        return tf.cast(tf.where(index >= 1 << 31, index - (1 << 32), index), tf.int32)

    def full_words(self, value: int, like):
        return tf.fill(tf.shape(like), _int(value))

    def flat_index(self, shape: tuple[int, ...]):
        return tf.reshape(self.iota(0, int(np.prod(shape))), shape)

    def add(self, a, b):
        return tf.add(a, _int(b) if isinstance(b, int) else b)

    def xor(self, a, b):
        return tf.bitwise.bitwise_xor(a, _int(b) if isinstance(b, int) else b)

    def rotl(self, a, r: int):
        return tf.bitwise.bitwise_or(tf.bitwise.left_shift(a, _int(r)), self.shr(a, 32 - r))

    def shr(self, a, r: int):
        return tf.bitwise.bitwise_and(tf.bitwise.right_shift(a, _int(r)), _int((1 << (32 - r)) - 1))

    def band(self, a, mask: int):
        return tf.bitwise.bitwise_and(a, _int(mask))

    def bor(self, a, mask: int):
        return tf.bitwise.bitwise_or(a, _int(mask))

    def band_is_set(self, a, mask: int):
        return tf.not_equal(self.band(a, mask), 0)

    def top_bit(self, a):
        return tf.less(a, 0)

    def interleave(self, a, b):
        return tf.reshape(tf.stack((a, b), axis=1), [-1])

    def to_float(self, a):
        return tf.cast(a, tf.float32)

    def bits(self, x):
        return tf.bitcast(x, tf.int32)

    def from_bits(self, a):
        return tf.bitcast(a, tf.float32)

    # --- float32 ----------------------------------------------------------------------------
    @staticmethod
    def _f(x):
        return tf.constant(x, tf.float32) if isinstance(x, float) else x

    def fadd(self, a, b):
        return tf.add(self._f(a), self._f(b))

    def fsub(self, a, b):
        return tf.subtract(self._f(a), self._f(b))

    def fmul(self, a, b):
        return tf.maximum(tf.multiply(self._f(a), self._f(b)), _LOWEST)

    def fdiv(self, a, b):
        return tf.divide(self._f(a), self._f(b))

    def sqrt(self, a):
        return tf.sqrt(a)

    def neg(self, a):
        return tf.negative(a)

    def abs(self, a):
        return tf.abs(a)

    def minimum(self, a, b):
        return tf.minimum(self._f(a), self._f(b))

    def maximum(self, a, b):
        return tf.maximum(self._f(a), self._f(b))

    def less(self, a, b):
        return tf.less(a, self._f(b))

    def less_equal(self, a, b):
        return tf.less_equal(a, self._f(b))

    def greater(self, a, b):
        return tf.greater(a, self._f(b))

    def greater_equal(self, a, b):
        return tf.greater_equal(a, self._f(b))

    def not_equal(self, a, b):
        return tf.not_equal(a, self._f(b))

    def where(self, cond, x, y, like: Any = None):
        if isinstance(x, float) or isinstance(y, float):
            x, y = (tf.fill(tf.shape(cond), self._f(v)) if isinstance(v, float) else v for v in (x, y))
        return tf.where(cond, x, y)

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape, value: float):
        return tf.fill(shape, tf.constant(value, tf.float32))

    def fixed(self, values):
        return tf.constant(np.asarray(values, dtype=np.float32))

    def reshape(self, x, shape):
        return tf.reshape(x, shape)

    def transpose(self, x, perm):
        return tf.transpose(x, perm)

    def concat(self, parts, axis: int):
        return tf.concat(parts, axis=axis)

    def scatter(self, shape, index, x):
        # Only DeltaOrthogonal scatters, and portable mode refuses its orthogonal leaf.
        raise AssertionError("unreachable: a Scatter node holds an orthogonal leaf")

    def rank(self, x, axis: int):
        order = tf.argsort(x, axis=axis, stable=True)
        return tf.cast(tf.argsort(order, axis=axis, stable=True), tf.float32)

    def cast(self, x, dtype: str):
        return tf.cast(x, getattr(tf, dtype))

    def zeros(self, shape, dtype: str):
        return tf.zeros(shape, getattr(tf, dtype))
