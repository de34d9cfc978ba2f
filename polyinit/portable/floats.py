"""32-bit words -> float32 uniform, normal and truncated normal, identically in every framework.

Only integer ops, float32 ``+ - * /``, comparisons and selects are used, each correctly
rounded by IEEE 754 wherever it runs; every constant is a float32 number, so it has one value
whatever a framework promotes it to. Products consumed by an addition go through ``ops.fmul``
(see the package docstring on fused multiply-add).

* uniform: ``u = (w >> 8) * 2^-24`` in [0, 1) (exact), ``x = low + (high - low) * u``.
* normal: sign from bit 31, ``q = ((w & 0x7FFFFFFF) + 1/2) * 2^-32`` in (0, 1/2), ``z = -+ndtri(q)``:
  tails reach |z| = 6.02 (q = 2^-33).
* truncated normal on [a, b] (standard units): mirrored so the interval leans to the lower tail,
  where float32 is finest; ``U = ((w >> 8) + 1/2) 2^-24``, ``u = Phi(a) + (Phi(b) - Phi(a)) U``,
  ``z = ndtri(u)`` clipped to [a, b].

``ndtri`` is Wichura's AS 241 PPND7 rational approximation of the inverse normal CDF (about 1e-7
relative in exact arithmetic); evaluated in float32 its error against the exact quantile is below
1e-6 absolute and relative (``tests/test_portable.py::test_inverse_normal_cdf_accuracy``), some
500 times below what a Kolmogorov-Smirnov test of 10^7 values resolves (~5e-4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from polyinit.moments import normal_cdf


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (as a Python float, so every framework reads one value)."""
    return float(np.float32(x))


# Wichura's AS 241 PPND7 (Applied Statistics 37, 1988), the single-precision version: every
# coefficient is positive, so no Horner step cancels in float32 (Acklam's central rational, which
# alternates signs, loses 8 bits near its edge in float32).
_A = tuple(map(f32, (59.109374720, 159.29113202, 50.434271938, 3.3871327179)))
_B = tuple(map(f32, (67.187563600, 78.757757664, 17.895169469, 1.0)))
_C = tuple(map(f32, (0.17023821103, 1.3067284816, 2.7568153900, 1.4234372777)))
_D = tuple(map(f32, (0.12021132975, 0.73700164250, 1.0)))
_E = tuple(map(f32, (0.017337203997, 0.42868294337, 3.0812263860, 6.6579051150)))
_F = tuple(map(f32, (0.012258202635, 0.24197894225, 1.0)))
_TAIL = f32(0.5 - 0.425)  # |q - 1/2| > 0.425
_CENTRAL = f32(0.180625)  # 0.425^2
# atanh series of log: log(m) = 2 s (1 + s^2/3 + s^4/5 + ... + s^10/11), s = (m - 1)/(m + 1).
_ATANH = tuple(f32(1.0 / k) for k in (11, 9, 7, 5, 3, 1))
_SQRT2 = f32(math.sqrt(2.0))
_LN2_HI = f32(0.693145751953125)  # 16 significant bits: e * _LN2_HI is exact for |e| < 256
_LN2_LO = f32(math.log(2.0) - 0.693145751953125)
_LARGEST_BELOW_ONE = 1.0 - 2.0**-24
_SMALLEST_NORMAL = 2.0**-126


def horner(ops: Any, coefficients: tuple[float, ...], x: Any) -> Any:
    """c0 x^n + ... + cn, highest power first, each product rounded before its addition."""
    acc = ops.fmul(x, coefficients[0])
    acc = ops.fadd(acc, coefficients[1])
    for c in coefficients[2:]:
        acc = ops.fadd(ops.fmul(acc, x), c)
    return acc


def log(ops: Any, x: Any) -> Any:
    """Natural log of positive normal float32 ``x``: x = 2^e m, m in [sqrt(2)/2, sqrt(2)),
    log x = e log 2 + 2 atanh((m - 1)/(m + 1)); max error about 2 ulp."""
    bits = ops.bits(x)
    exponent = ops.fsub(ops.to_float(ops.shr(bits, 23)), 127.0)
    m = ops.from_bits(ops.bor(ops.band(bits, 0x007FFFFF), 0x3F800000))
    big = ops.greater(m, _SQRT2)
    m = ops.where(big, ops.fmul(m, 0.5), m)  # exact
    exponent = ops.where(big, ops.fadd(exponent, 1.0), exponent)
    s = ops.fdiv(ops.fsub(m, 1.0), ops.fadd(m, 1.0))  # m - 1 exact (Sterbenz)
    series = horner(ops, _ATANH, ops.fmul(s, s))
    log_m = ops.fmul(ops.fmul(s, 2.0), series)
    low = ops.fadd(ops.fmul(exponent, _LN2_LO), log_m)
    return ops.fadd(ops.fmul(exponent, _LN2_HI), low)


def sqrt(ops: Any, x: Any) -> Any:
    """sqrt of float32 x in [0.5, 128] by Newton's y <- (y + x / y) / 2 from the bit-trick seed
    y0 = bits^-1((bits(x) >> 1) + 0x1FBD1DF5) (relative error < 4%): four steps reach float32's
    resolution. Only division, addition and a halving (exact) are used, so no fused multiply-add
    can change it; a library sqrt is not used because torch's CPU float32 sqrt is not correctly
    rounded (it differs from numpy, JAX and TensorFlow in 17% of values, torch 2.13)."""
    y = ops.from_bits(ops.add(ops.shr(ops.bits(x), 1), 0x1FBD1DF5))
    for _ in range(4):
        y = ops.fmul(ops.fadd(y, ops.fdiv(x, y)), 0.5)
    return y


def ndtri_lower(ops: Any, q: Any) -> Any:
    """Phi^-1(q) for float32 q in [2^-126, 1/2] (AS 241 PPND7): with d = q - 1/2,
    central (|d| <= 0.425): d A(r) / B(r), r = 0.180625 - d^2; tail: r = sqrt(-log q),
    -C(r - 1.6) / D(r - 1.6) for r <= 5, else -E(r - 5) / F(r - 5)."""
    d = ops.fsub(q, 0.5)
    r = ops.fsub(_CENTRAL, ops.fmul(d, d))
    central = ops.fdiv(ops.fmul(d, horner(ops, _A, r)), horner(ops, _B, r))
    return ops.replace_where(ops.less(q, _TAIL), central, q, _lower_tail)


def _lower_tail(ops: Any, q: Any) -> Any:
    t = sqrt(ops, ops.neg(log(ops, q)))  # -log q in [0.69, 88]
    near, far = ops.fsub(t, 1.6), ops.fsub(t, 5.0)
    tail = ops.where(
        ops.greater(t, 5.0),
        ops.fdiv(horner(ops, _E, far), horner(ops, _F, far)),
        ops.fdiv(horner(ops, _C, near), horner(ops, _D, near)),
    )
    return ops.neg(tail)


def _affine(ops: Any, z: Any, shift: float, scale: float) -> Any:
    # No "+ 0.0": XLA folds x + 0 into x, which keeps a -0 that numpy and torch turn into +0.
    if scale != 1.0:
        z = ops.fmul(z, f32(scale))
    return z if shift == 0.0 else ops.fadd(z, f32(shift))


def positive_zero(ops: Any, x: Any) -> Any:
    """-0 as +0 (XLA folds x + 0 into x, so a zero's sign can differ between frameworks)."""
    return ops.where(ops.not_equal(x, 0.0), x, 0.0, like=x)


def uniform(ops: Any, words: Any, low: float, high: float) -> Any:
    u = ops.fmul(ops.to_float(ops.shr(words, 8)), 2.0**-24)
    return _affine(ops, u, low, high - low)


def normal(ops: Any, words: Any, mean: float, std: float) -> Any:
    magnitude = ops.to_float(ops.band(words, 0x7FFFFFFF))
    q = ops.fmul(ops.fadd(magnitude, 0.5), 2.0**-32)
    g = ndtri_lower(ops, q)
    return _affine(ops, ops.where(ops.top_bit(words), ops.neg(g), g), mean, std)


def truncation(a: float, b: float) -> tuple[bool, float, float, float, float]:
    """``(mirror, a, b, Phi(a), Phi(b) - Phi(a))`` as float32 numbers, for a truncated normal on
    [a, b] (standard units), mirrored to [-b, -a] when ``a + b > 0`` so that the interval leans to
    the lower tail, where float32 is finest."""
    mirror = a + b > 0
    if mirror:
        a, b = -b, -a
    p_low, p_high = normal_cdf(a), normal_cdf(b)
    return mirror, f32(a), f32(b), f32(p_low), f32(p_high - p_low)


def truncated_standard(ops: Any, words: Any, a: Any, b: Any, p_low: Any, p_width: Any) -> Any:
    """The standard truncated normal on [a, b] (already mirrored, see ``truncation``); the four
    numbers are float32 scalars, Python floats or the backend's own (a compiled backend passes
    them as arguments)."""
    unit = ops.fmul(ops.fadd(ops.to_float(ops.shr(words, 8)), 0.5), 2.0**-24)  # in (0, 1), exact
    u = ops.fadd(ops.fmul(unit, p_width), p_low)
    u = ops.minimum(ops.maximum(u, _SMALLEST_NORMAL), _LARGEST_BELOW_ONE)
    lower = ops.less(u, 0.5)
    g = ndtri_lower(ops, ops.where(lower, u, ops.fsub(1.0, u)))  # 1 - u exact for u >= 1/2
    return ops.minimum(ops.maximum(ops.where(lower, g, ops.neg(g)), a), b)


def truncated_normal(ops: Any, words: Any, mean: float, std: float, a: float, b: float) -> Any:
    mirror, a, b, p_low, p_width = truncation(a, b)
    z = truncated_standard(ops, words, a, b, p_low, p_width)
    return _affine(ops, ops.neg(z) if mirror else z, mean, std)
