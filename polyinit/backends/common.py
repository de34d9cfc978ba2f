"""Steps every backend takes the same way, written once over an array namespace.

``xp`` is any namespace with numpy's names for what is used here (numpy, ``torch``, ``jax.numpy``,
``keras.ops``, ``array_api_strict``); the plain-number helpers need no namespace at all.

>>> import numpy as np
>>> rank(np.array([[0.3, 0.1, 0.2]]), 1, np)
array([[2, 0, 1]])
"""

from __future__ import annotations

import math
from typing import Any

from polyinit.moments import normal_cdf


def _diagonal(r: Any, xp: Any) -> Any:
    # The array API puts diagonal under linalg; numpy, torch, jax.numpy and keras.ops at the top.
    fn = getattr(xp, "diagonal", None)
    return fn(r) if fn is not None else xp.linalg.diagonal(r)


def haar_orthogonal(q: Any, r: Any, rows: int, cols: int, xp: Any, transpose: Any = None) -> Any:
    """The Haar-random (rows, cols) matrix from ``q, r = qr(g)`` of a standard normal
    (max(rows, cols), min(rows, cols)) matrix ``g``: ``Q diag(sign(diag R))``, transposed when
    rows < cols.

    Why the sign: QR is unique only up to the signs of R's diagonal, and LAPACK's Householder QR
    picks them so that every Q[0, 0] comes out negative; multiplying each column of Q by the sign of
    R's diagonal entry makes R's diagonal positive, which is the QR whose Q is Haar-distributed
    (Mezzadri, "How to generate random matrices from the classical compact groups", 2007).
    ``transpose`` defaults to ``x.T`` (pass ``keras.ops.transpose`` where tensors lack ``.T``).

    >>> import numpy as np
    >>> q, r = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 3)))
    >>> w = haar_orthogonal(q, r, 3, 5, np)
    >>> w.shape, bool(np.allclose(w @ w.T, np.eye(3)))
    ((3, 5), True)
    """
    q = q * xp.sign(_diagonal(r, xp))  # broadcasts over rows: column j times sign(R[j, j])
    if rows >= cols:
        return q
    return transpose(q) if transpose is not None else q.T


def rank(x: Any, axis: int, xp: Any) -> Any:
    """The 0-based rank of each element along ``axis``: argsort of argsort (the first argsort
    lists the elements in order, the second says where each element sits in that list). Integer
    result; the caller casts. Ties cannot occur between continuous keys drawn in float32/64."""
    return xp.argsort(xp.argsort(x, axis=axis), axis=axis)


def l2_normalize(x: Any, axis: int, xp: Any) -> Any:
    """``x / ||x||_2`` over each slice along ``axis``, with the framework's own sum (its order of
    summation is its own: native draws are not bit-identical across frameworks anyway; portable
    draws sum by halves in a fixed order, ``polyinit.portable.evaluate``).

    >>> import numpy as np
    >>> l2_normalize(np.array([[3.0, 4.0]]), 1, np)
    array([[0.6, 0.8]])
    """
    return x / xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))


def truncation_interval(a: float, b: float, eps: float) -> tuple[float, float, float, float]:
    """The one edge rule of every backend's truncated normal by inverse CDF.

    Returns ``(low, high, clamp_low, clamp_high)``: draw u ~ U(low, high) with low = 2 Phi(a) - 1,
    high = 2 Phi(b) - 1, clamp u to [clamp_low, clamp_high], take z = sqrt(2) erfinv(u), and clip z
    to [a, b].

    Why this rule: erfinv(+-1) = +-inf, and u can land on +-1 exactly (when a bound is far out, or
    by rounding low + (high - low) U in the draw's dtype), so u is kept at least one ``eps`` (the
    draw dtype's machine epsilon) inside +-1. That bounds |z| (5.3 in float32, 8.1 in float64) and
    moves at most eps/2 of probability, below what the dtype resolves near +-1. Nothing else is
    clamped in u: inside (-1, 1) u is already in [low, high] by construction. The final clip of z
    to [a, b] removes erfinv's own rounding past a bound (erfinv(2 Phi(b) - 1) can exceed b by an
    ulp), so no value leaves the promised support.

    >>> low, high, clamp_low, clamp_high = truncation_interval(-2.0, 2.0, 2.0 ** -23)
    >>> round(high, 6), clamp_high == high
    (0.9545, True)
    >>> truncation_interval(-100.0, 100.0, 2.0 ** -23)[2:] == (-1 + 2.0 ** -23, 1 - 2.0 ** -23)
    True
    """
    low, high = 2 * normal_cdf(a) - 1, 2 * normal_cdf(b) - 1
    edge = 1.0 - eps
    return low, high, max(low, -edge), min(high, edge)


SQRT2 = math.sqrt(2.0)
