"""numpy's ops for portable draws; also the written interface every backend's ``Ops`` follows.

Words are 32-bit unsigned integers in the framework's own representation (here ``uint32``; torch
and TensorFlow use ``int32`` bit patterns, as they lack unsigned shifts and adds); int arguments
are Python ints in [0, 2^32). Floats are float32 and float arguments are float32 numbers
(``floats.f32``), so a framework that computes a scalar op in double still rounds to the same
float32 (double holds every float32 sum, product, quotient and root to better than half an ulp
of float32 twice over, so the double-rounded result is the correctly rounded one).

The interface: flags ``NAME``, ``CHUNKED`` (writes chunks into a preallocated output), ``INDEXED``
(words from each element's own index, for compiled sharded draws), optional ``CHUNK``; word ops
``iota full_words flat_index add xor rotl shr band bor band_is_set top_bit interleave to_float
bits from_bits``; float32 ops ``fadd fsub fmul fdiv neg abs minimum maximum less less_equal
greater greater_equal not_equal where replace_where``, where ``fmul``'s product must be rounded
before any add that consumes it (no fused multiply-add); array ops ``full fixed reshape
transpose concat scatter rank cast zeros empty write_flat copy_into``; optionally ``fused_leaf``
and ``fill_leaf`` (random leaves from ``polyinit.portable.fused``'s compiled kernels, for CPU
arrays). A new framework is one such class (about 150 lines) and a ``draw_portable`` of a few
lines in its backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, Union

import numpy as np

from polyinit.backends.numpy import numpy_dtype
from polyinit.portable import fused

Array: TypeAlias = np.ndarray
Word: TypeAlias = Union[np.ndarray, int]  # uint32 words, or one word as a Python int
Float: TypeAlias = Union[np.ndarray, float]  # a float32 array, or one float32 number


class Ops:
    NAME = "numpy"
    CHUNKED = True  # writes chunks in place, so a draw holds little more than its output
    INDEXED = False  # words by flat ranges (a cipher call gives two words), not per element

    def __init__(self, use_fused: bool | None = None):
        # Random leaves of MIN_SIZE elements or more come from polyinit.portable.fused's compiled
        # kernels where numba is installed (the same values, 5-10x faster, on every core), loaded
        # on the first such leaf; use_fused=False forces these ops throughout.
        self.fused = use_fused is not False and fused.enabled()

    def _use_fused(self, node: Any) -> bool:
        return self.fused and math.prod(node.shape) >= fused.MIN_SIZE and fused.available()

    # --- fused random leaves (optional part of the interface) --------------------------------
    def fused_leaf(self, node: Any, key: tuple[int, int], leaf: int, start: int, stop: int) -> np.ndarray | None:
        """Flat elements start..stop-1 of random leaf ``node`` from the fused kernel, or None
        (a leaf under ``fused.MIN_SIZE`` elements: the reference ops, nothing to load)."""
        return fused.values(node, key, leaf, start, stop) if self._use_fused(node) else None

    def fill_leaf(self, out: np.ndarray, node: Any, key: tuple[int, int], leaf: int, start: int = 0) -> bool:
        """Fill ``out`` with flat elements start.. of leaf ``node`` (-0 as +0, as a draw's result)
        by the fused kernel; False where it cannot."""
        if not (out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable and self._use_fused(node)):
            return False
        fused.fill(node, key, leaf, start, out)
        return True

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int) -> np.ndarray:
        return np.arange(start, start + count, dtype=np.uint64).astype(np.uint32)

    def full_words(self, value: int, like: np.ndarray) -> np.ndarray:
        return np.full(like.shape, value, dtype=np.uint32)

    def flat_index(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.iota(0, int(np.prod(shape))).reshape(shape)

    # add, xor and rotl may overwrite their first argument (threefry never reuses it): in place,
    # the cipher's 100 passes run in cache instead of allocating.
    def add(self, a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
        return np.add(a, np.uint32(b) if isinstance(b, int) else b, out=a)  # wraps modulo 2^32

    def xor(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bitwise_xor(a, b, out=a)

    def rotl(self, a: np.ndarray, r: int) -> np.ndarray:
        high = a >> np.uint32(32 - r)
        np.left_shift(a, np.uint32(r), out=a)
        return np.bitwise_or(a, high, out=a)

    def shr(self, a: np.ndarray, r: int) -> np.ndarray:
        return a >> np.uint32(r)

    def band(self, a: np.ndarray, mask: int) -> np.ndarray:
        return a & np.uint32(mask)

    def bor(self, a: np.ndarray, mask: int) -> np.ndarray:
        return a | np.uint32(mask)

    def band_is_set(self, a: np.ndarray, mask: int) -> np.ndarray:
        return (a & np.uint32(mask)) != 0

    def top_bit(self, a: np.ndarray) -> np.ndarray:
        return a >= np.uint32(1 << 31)

    def interleave(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty(2 * a.size, dtype=np.uint32)
        out[0::2], out[1::2] = a, b
        return out

    def to_float(self, a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32)  # a < 2^31: correctly rounded

    def bits(self, x: np.ndarray) -> np.ndarray:
        return x.view(np.uint32)

    def from_bits(self, a: np.ndarray) -> np.ndarray:
        return a.view(np.float32)

    # --- float32 ----------------------------------------------------------------------------
    def fadd(self, a: Float, b: Float) -> Array:
        return np.add(a, b, dtype=np.float32)

    def fsub(self, a: Float, b: Float) -> Array:
        return np.subtract(a, b, dtype=np.float32)

    def fmul(self, a: Float, b: Float) -> Array:
        return np.multiply(a, b, dtype=np.float32)

    def fdiv(self, a: Float, b: Float) -> Array:
        return np.divide(a, b, dtype=np.float32)

    def sqrt(self, a: Array) -> Array:
        return np.sqrt(a, dtype=np.float32)

    def neg(self, a: Array) -> Array:
        return np.negative(a)

    def abs(self, a: Array) -> Array:
        return np.abs(a)

    def minimum(self, a: Float, b: Float) -> Array:
        return np.minimum(a, b, dtype=np.float32)

    def maximum(self, a: Float, b: Float) -> Array:
        return np.maximum(a, b, dtype=np.float32)

    def less(self, a: Array, b: Float) -> Array:
        return np.less(a, b)

    def less_equal(self, a: Array, b: Float) -> Array:
        return np.less_equal(a, b)

    def greater(self, a: Array, b: Float) -> Array:
        return np.greater(a, b)

    def greater_equal(self, a: Array, b: Float) -> Array:
        return np.greater_equal(a, b)

    def not_equal(self, a: Array, b: Float) -> Array:
        return np.not_equal(a, b)

    def where(self, cond: Array, x: Float, y: Float, like: Any = None) -> Array:
        if isinstance(x, float) or isinstance(y, float):
            return np.where(cond, np.float32(x), np.float32(y))
        return np.where(cond, x, y)

    def replace_where(self, mask: Array, base: Array, x: Array, fn: Callable[[Ops, Array], Array]) -> Array:
        """``base`` with fn(x) where ``mask``: fn runs on the masked elements only (the normal's
        tails are 15% of values)."""
        base[mask] = fn(self, x[mask])
        return base

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape: Sequence[int], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float32)

    def fixed(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float32)

    def reshape(self, x: Array, shape: Sequence[int]) -> Array:
        return x.reshape(shape)

    def transpose(self, x: Array, perm: Sequence[int]) -> Array:
        return np.transpose(x, perm)

    def concat(self, parts: Sequence[Array], axis: int) -> Array:
        return np.concatenate(parts, axis=axis)

    def scatter(self, shape: Sequence[int], index: Any, x: Array) -> Array:
        out = np.zeros(shape, dtype=np.float32)
        out[tuple(slice(None) if i is None else i for i in index)] = x
        return out

    def rank(self, x: Array, axis: int) -> Array:
        """0-based rank along ``axis``, ties broken by position (stable sorts in every backend)."""
        order = np.argsort(x, axis=axis, kind="stable")
        return np.argsort(order, axis=axis, kind="stable").astype(np.float32)

    def cast(self, x: Array, dtype: str) -> Array:
        return np.asarray(x).astype(numpy_dtype(dtype))

    def zeros(self, shape: Sequence[int], dtype: str) -> Array:
        return np.zeros(shape, dtype=numpy_dtype(dtype))

    def empty(self, shape: Sequence[int], dtype: str) -> Array:
        return np.empty(shape, dtype=numpy_dtype(dtype))

    def write_flat(self, out: np.ndarray, start: int, values: np.ndarray) -> None:
        out.reshape(-1)[start : start + values.size] = values

    def copy_into(self, out: np.ndarray, values: np.ndarray) -> np.ndarray:
        out[...] = values
        return out
