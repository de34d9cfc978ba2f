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

``ndtri`` is Acklam's rational approximation of the inverse normal CDF (relative error 1.15e-9 in
exact arithmetic); evaluated in float32 its error against the exact quantile is at most 3e-7
relative and 2e-6 absolute (``benchmarks/bench_portable.py --accuracy`` measures it), far below
what a Kolmogorov-Smirnov test of 10^7 values resolves (~5e-4).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from polyinit.moments import normal_cdf


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (as a Python float, so every framework reads one value)."""
    return float(np.float32(x))


# Acklam's coefficients, rounded to float32.
_A = tuple(map(f32, (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
                     1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)))
_B = tuple(map(f32, (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
                     6.680131188771972e01, -1.328068155288572e01, 1.0)))
_C = tuple(map(f32, (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
                     -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)))
_D = tuple(map(f32, (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
                     3.754408661907416e00, 1.0)))
_P_LOW = f32(0.02425)
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
    m = ops.where(big, ops.fmul(m, 0.5), m)           # exact
    exponent = ops.where(big, ops.fadd(exponent, 1.0), exponent)
    s = ops.fdiv(ops.fsub(m, 1.0), ops.fadd(m, 1.0))  # m - 1 exact (Sterbenz)
    series = horner(ops, _ATANH, ops.fmul(s, s))
    log_m = ops.fmul(ops.fmul(s, 2.0), series)
    low = ops.fadd(ops.fmul(exponent, _LN2_LO), log_m)
    return ops.fadd(ops.fmul(exponent, _LN2_HI), low)


def sqrt(ops: Any, x: Any) -> Any:
    """sqrt of float32 x in [1, 128] by Newton's y <- (y + x / y) / 2 from the bit-trick seed
    y0 = bits^-1((bits(x) >> 1) + 0x1FBD1DF5) (relative error < 4%): four steps reach float32's
    resolution. Only division, addition and a halving (exact) are used, so no fused multiply-add
    can change it; a library sqrt is not used because torch's CPU float32 sqrt is not correctly
    rounded (it differs from numpy, JAX and TensorFlow in 17% of values, torch 2.13)."""
    y = ops.from_bits(ops.add(ops.shr(ops.bits(x), 1), 0x1FBD1DF5))
    for _ in range(4):
        y = ops.fmul(ops.fadd(y, ops.fdiv(x, y)), 0.5)
    return y


def ndtri_lower(ops: Any, q: Any) -> Any:
    """Phi^-1(q) for float32 q in [2^-126, 1/2]: Acklam's lower-tail and central rationals."""
    t = sqrt(ops, ops.fmul(log(ops, q), -2.0))  # -2 log q in [1.38, 46]
    tail = ops.fdiv(horner(ops, _C, t), horner(ops, _D, t))
    d = ops.fsub(q, 0.5)
    r = ops.fmul(d, d)
    central = ops.fdiv(ops.fmul(d, horner(ops, _A, r)), horner(ops, _B, r))
    return ops.where(ops.less(q, _P_LOW), tail, central)


def _affine(ops: Any, z: Any, shift: float, scale: float) -> Any:
    if scale == 1.0 and shift == 0.0:
        return z
    return ops.fadd(ops.fmul(z, f32(scale)), f32(shift))


def uniform(ops: Any, words: Any, low: float, high: float) -> Any:
    u = ops.fmul(ops.to_float(ops.shr(words, 8)), 2.0**-24)
    return _affine(ops, u, low, high - low)


def normal(ops: Any, words: Any, mean: float, std: float) -> Any:
    magnitude = ops.to_float(ops.band(words, 0x7FFFFFFF))
    q = ops.fmul(ops.fadd(magnitude, 0.5), 2.0**-32)
    g = ndtri_lower(ops, q)
    return _affine(ops, ops.where(ops.top_bit(words), ops.neg(g), g), mean, std)


def truncated_normal(ops: Any, words: Any, mean: float, std: float, a: float, b: float) -> Any:
    mirror = a + b > 0
    if mirror:
        a, b = -b, -a
    p_low, p_high = normal_cdf(a), normal_cdf(b)
    unit = ops.fmul(ops.fadd(ops.to_float(ops.shr(words, 8)), 0.5), 2.0**-24)  # in (0, 1), exact
    u = ops.fadd(ops.fmul(unit, f32(p_high - p_low)), f32(p_low))
    u = ops.minimum(ops.maximum(u, _SMALLEST_NORMAL), _LARGEST_BELOW_ONE)
    lower = ops.less(u, 0.5)
    g = ndtri_lower(ops, ops.where(lower, u, ops.fsub(1.0, u)))  # 1 - u exact for u >= 1/2
    z = ops.minimum(ops.maximum(ops.where(lower, g, ops.neg(g)), f32(a)), f32(b))
    return _affine(ops, ops.neg(z) if mirror else z, mean, std)
