"""Closed-form statistics of the primitive distributions, as raw moments E[x^k], k = 1..4.

Raw moments compose: a mixture's raw moments are the weighted means of its parts', and mean,
variance and excess kurtosis follow from them. Pure Python (``math``), no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

Moments = tuple[float, float, float, float]

_SQRT2 = math.sqrt(2.0)


def normal_pdf(z: float) -> float:
    return 0.0 if math.isinf(z) else math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


def constant(c: float) -> Moments:
    return (c, c**2, c**3, c**4)


def uniform(low: float, high: float) -> Moments:
    """E[x^k] = (high^(k+1) - low^(k+1)) / ((k+1)(high - low))."""
    width = high - low
    return tuple((high ** (k + 1) - low ** (k + 1)) / ((k + 1) * width) for k in range(1, 5))  # type: ignore[return-value]


def normal(mean: float, std: float) -> Moments:
    m, v = mean, std * std
    return (m, m * m + v, m**3 + 3 * m * v, m**4 + 6 * m * m * v + 3 * v * v)


def standard_truncated(a: float, b: float) -> Moments:
    """Raw moments of N(0, 1) cut to [a, b] by the recursion
    m_k = (k-1) m_{k-2} + (a^(k-1) phi(a) - b^(k-1) phi(b)) / Z, with Z = Phi(b) - Phi(a)."""
    mass = normal_cdf(b) - normal_cdf(a)

    def edge(x: float, power: int) -> float:
        return 0.0 if math.isinf(x) else x**power * normal_pdf(x)

    raw = [1.0]
    for k in range(1, 5):
        previous = raw[k - 2] if k >= 2 else 0.0
        raw.append((k - 1) * previous + (edge(a, k - 1) - edge(b, k - 1)) / mass)
    return tuple(raw[1:])  # type: ignore[return-value]


def truncated_std(a: float, b: float) -> float:
    """Std of N(0, 1) cut to [a, b]; 0.8796256610342398 for [-2, 2]."""
    m1, m2, _, _ = standard_truncated(a, b)
    return math.sqrt(m2 - m1 * m1)


def affine(moments: Moments, scale: float, shift: float) -> Moments:
    """Raw moments of ``scale * x + shift`` from those of x (binomial expansion)."""
    raw = (1.0,) + tuple(moments)
    return tuple(sum(math.comb(k, j) * scale**j * raw[j] * shift ** (k - j) for j in range(k + 1)) for k in range(1, 5))  # type: ignore[return-value]


def mixture(parts: Sequence[tuple[float, Moments]]) -> Moments:
    """Raw moments of a mixture given (weight, moments) pairs whose weights sum to 1."""
    return tuple(sum(w * m[k] for w, m in parts) for k in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Stats:
    """What a plan promises about its samples; the conformance oracle.

    ``moments``: raw moments E[x^k], k = 1..4, or None when not known in closed form.
    ``low``/``high``: the support (every sample lies in [low, high]).
    ``zero_fraction``: the exact fraction of zeros, where the scheme fixes it (sparse).
    ``exact``: the exact values, for deterministic schemes given as an array.
    ``orthogonal``: (axis, gain) when rows/columns are orthonormal times gain.
    ``method``: how the numbers were obtained ("closed form", "quadrature", ...).
    ``distribution``: the one continuous law every element follows, for a goodness-of-fit test:
    ``("uniform", low, high)``, ``("normal", mean, std)`` or ``("truncated_normal", mean, std, a, b)``
    (a, b in standard units).
    ``zeros_per_slice``: (axis, count) when every slice along ``axis`` holds exactly ``count``
    zeros (sparse).
    ``blocks``: (axis, parts) when the tensor is equal blocks along ``axis``, each with its own
    promise (None where a part has no closed form).
    ``delta``: (index, gain) when the tensor is zeros except an orthogonal matrix times gain at
    ``index`` (ints pick, None keeps an axis): delta-orthogonal.
    ``unit_norm``: the axis along which every slice has unit L2 norm (``Normalized``).
    """

    moments: Optional[Moments]
    low: float
    high: float
    zero_fraction: Optional[float] = None
    exact: Optional[object] = None
    orthogonal: Optional[tuple[int, float]] = None
    method: str = "closed form"
    distribution: Optional[tuple] = None
    zeros_per_slice: Optional[tuple[int, int]] = None
    blocks: Optional[tuple[int, tuple[Optional[Stats], ...]]] = None
    delta: Optional[tuple[tuple[Optional[int], ...], float]] = None
    unit_norm: Optional[int] = None

    @property
    def mean(self) -> Optional[float]:
        return None if self.moments is None else self.moments[0]

    @property
    def var(self) -> Optional[float]:
        if self.moments is None:
            return None
        m1, m2 = self.moments[:2]
        return max(m2 - m1 * m1, 0.0)

    @property
    def std(self) -> Optional[float]:
        return None if self.var is None else math.sqrt(self.var)

    @property
    def excess_kurtosis(self) -> Optional[float]:
        """E[(x - mean)^4] / var^2 - 3; None for constants (var = 0) or unknown moments."""
        if self.moments is None or not self.var:
            return None
        m1, m2, m3, m4 = self.moments
        central4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
        return central4 / self.var**2 - 3.0
