"""Statistical checks of samples against a plan's promise: the oracle is always the plan's
closed-form statistics, never another backend's sample.

Every check has false-alarm probability ``alpha`` (default 1e-6) under the null hypothesis that the
sample follows the plan:

* support: no value outside [low, high] (widened by the dtype's rounding); deterministic.
* mean: |mean - mu| <= z sigma / sqrt(n), z = Phi^-1(1 - alpha/2).
* variance: |s^2 - sigma^2| <= z sigma^2 sqrt((kappa + 2) / n), kappa the promised excess kurtosis
  (the large-sample law of s^2).
* kurtosis: a t-test on the excess kurtosis of 16 equal batches (distribution-free).
* KS: the Kolmogorov-Smirnov distance to the analytic CDF, with each value's CDF taken over its
  rounding interval so float16/bfloat16 steps are not mistaken for misfit; p-value by the
  asymptotic Kolmogorov law.
* zero fraction: exact counts where the plan fixes them per slice (sparse), else a binomial z-test.
* orthogonal: Q^T Q = gain^2 I to a tolerance set by the dtype; exact: equal to the promised array.
* unit norm (``Normalized``): every slice along the axis has norm 1 to a tolerance set by the
  dtype, in every draw; then the moments of a uniform direction, or the reference's draws.
* Haar signs (orthogonal, delta-orthogonal): the diagonal signs of the top square block are fair
  coins (an exact binomial test), which a QR without the sign correction fails.

The checks read only the plan's promise (``polyinit.moments.Stats``) and its dtype; the plan itself
is drawn only by the numpy reference backend, for expressions that have no closed form.

>>> import numpy as np
>>> from polyinit import Uniform, resolve
>>> from polyinit.backends.numpy import draw
>>> plan = resolve(Uniform(low=-1.0, high=1.0), (512, 512))
>>> all(c.passed for c in check(draw(plan, np.random.default_rng(0)), plan))
True
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Optional

import numpy as np

from polyinit import nodes as n
from polyinit.errors import PolyinitError
from polyinit.moments import Stats, normal_cdf
from polyinit.plan import Plan

ALPHA = 1e-6
# Exact zeros a normal draw may give on its own, per element (see _zero_fraction).
_EXTRA_ZEROS = {"float16": 1e-3, "bfloat16": 1e-3, "float32": 1e-6, "float64": 1e-12}
KURTOSIS_BATCHES = 16
# Relative rounding of each dtype (half an ulp relative to the value).
_ROUNDING = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}


@dataclass(frozen=True)
class Check:
    """One statistic: what the plan promised, what the sample showed, and the tolerance."""

    name: str
    expected: float
    observed: float
    tolerance: float
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (
            f"{verdict:4} {self.name}: expected {self.expected:.6g}, observed {self.observed:.6g}, "
            f"tolerance {self.tolerance:.3g}{' (' + self.detail + ')' if self.detail else ''}"
        )


def z_value(alpha: float) -> float:
    """Two-sided normal quantile: 4.8916 for alpha = 1e-6."""
    return NormalDist().inv_cdf(1 - alpha / 2)


def check(samples: np.ndarray | Sequence[np.ndarray], plan: Plan, alpha: float = ALPHA) -> list[Check]:
    """Every check that applies to ``plan``'s promise (``plan.stats``), on one sample or several
    independent draws of it."""
    draws = (
        [np.asarray(samples, dtype=np.float64)]
        if isinstance(samples, np.ndarray)
        else [np.asarray(s, dtype=np.float64) for s in samples]
    )
    return _check(draws, plan.stats, plan, alpha)


def _check(draws: list[np.ndarray], stats: Optional[Stats], plan: Plan, alpha: float) -> list[Check]:
    """The checks of ``stats`` (the plan's promise or one block's); ``plan`` gives the dtype, and
    the plan itself is drawn by the reference backend only where there is no closed form."""
    dtype = plan.dtype
    if stats is None:  # an expression of several random leaves: no closed form
        return _against_reference(draws, plan, alpha) if plan.leaves else []
    if stats.blocks is not None:
        return _blocks(draws, stats, plan, alpha)
    if stats.delta is not None:
        return [c for d in draws for c in _delta(d, stats, dtype)] + [
            _haar_signs([_delta_centre(d, stats) / stats.delta[1] for d in draws], alpha, "Haar signs at the centre")
        ]
    if stats.exact is not None:
        return [_exact(d, np.asarray(stats.exact), dtype) for d in draws]
    if stats.orthogonal is not None:
        matrices = [_orthogonal_matrix(d, stats) for d in draws]
        gain = stats.orthogonal[1]
        return (
            [_support(draws, stats, dtype)]
            + [_gram(m, gain, dtype, "orthogonality max|Q^T Q - g^2 I|") for m in matrices]
            + [_haar_signs([m / gain for m in matrices], alpha, "Haar signs")]
        )
    if stats.unit_norm is not None:
        return _unit_norm(draws, stats, plan, alpha)
    flat = np.concatenate([d.ravel() for d in draws])
    results = [_support(draws, stats, dtype)]
    if stats.low == stats.high:
        return results
    results += [_mean(flat, stats, dtype, alpha), _variance(flat, stats, dtype, alpha)]
    if stats.excess_kurtosis is not None and flat.size >= 1600:
        results.append(_kurtosis(flat, stats, alpha))
    if stats.zeros_per_slice is not None:
        results.append(_zeros_per_slice(draws, flat, stats, dtype))
    elif stats.zero_fraction is not None:
        results.append(_zero_fraction(flat, stats, alpha))
    cdf = continuous_cdf(stats)
    if cdf is not None:
        results.append(_ks(flat, cdf, dtype, alpha))
    return results


def _unit_norm(draws: list[np.ndarray], stats: Stats, plan: Plan, alpha: float) -> list[Check]:
    """Normalized: every slice along the axis has norm 1 (exact but for rounding, in every draw),
    and the direction law: the closed-form moments of a uniform direction (a centred normal
    operand), else the numpy reference's draws."""
    axis = stats.unit_norm
    assert axis is not None  # _check dispatched on it
    norms = np.concatenate([np.linalg.norm(d, axis=axis).ravel() for d in draws])
    error = float(np.max(np.abs(norms - 1.0)))
    # Each stored value rounds once to the dtype (relative 1 unit) after float32 arithmetic
    # (a sum by halves, a root, a reciprocal, a product: well under 64 float32 units).
    tolerance = 2 * _ROUNDING[plan.dtype] + 64 * _ROUNDING["float32"]
    results = [
        _support(draws, stats, plan.dtype),
        Check("unit norm max|norm - 1|", 0.0, error, tolerance, error <= tolerance),
    ]
    if stats.moments is None:
        return results + _against_reference(draws, plan, alpha)
    flat = np.concatenate([d.ravel() for d in draws])
    results += [_mean(flat, stats, plan.dtype, alpha), _variance(flat, stats, plan.dtype, alpha)]
    if flat.size >= 1600:
        results.append(_kurtosis(flat, stats, alpha))
    return results


def _blocks(draws: list[np.ndarray], stats: Stats, plan: Plan, alpha: float) -> list[Check]:
    """Each block is checked against its own part's promise: the blocks are not exchangeable.
    Where a part has no closed form, the whole tensor is compared with the reference backend."""
    assert stats.blocks is not None  # _check dispatched on it
    axis, parts = stats.blocks
    if any(part is None for part in parts):
        return _against_reference(draws, plan, alpha)
    results = []
    for i, part in enumerate(parts):
        assert part is not None  # checked above
        pieces = [np.split(d, len(parts), axis=axis)[i] for d in draws]
        results += [replace(c, name=f"block {i}: {c.name}") for c in _check(pieces, part, plan, alpha)]
    return results


def _delta_centre(sample: np.ndarray, stats: Stats) -> np.ndarray:
    assert stats.delta is not None  # _check dispatched on it
    index, _ = stats.delta
    return sample[tuple(slice(None) if i is None else i for i in index)]


def _delta(sample: np.ndarray, stats: Stats, dtype: str) -> list[Check]:
    """Delta-orthogonal: zero off the centre, an orthogonal matrix times gain at the centre."""
    assert stats.delta is not None  # _check dispatched on it
    index, gain = stats.delta
    rest = sample.copy()
    rest[tuple(slice(None) if i is None else i for i in index)] = 0.0
    off = float(np.max(np.abs(rest)))
    return [
        Check("zeros off the centre", 0.0, off, 0.0, off == 0.0),
        _gram(_delta_centre(sample, stats), gain, dtype, "orthogonality at the centre"),
    ]


def _orthogonal_matrix(sample: np.ndarray, stats: Stats) -> np.ndarray:
    assert stats.orthogonal is not None  # _check dispatched on it
    axis, _ = stats.orthogonal
    return np.moveaxis(sample, axis, 0).reshape(sample.shape[axis], -1)


def _haar_signs(matrices: Sequence[np.ndarray], alpha: float, name: str) -> Check:
    """The signs of the diagonal of each matrix's top square block are iid fair coins under the
    Haar law: Q D has the law of Q for any fixed sign matrix D, so with D random and independent
    the signs (s_i sign(Q_ii)) are iid +-1 whatever Q's. A QR without Mezzadri's sign correction
    breaks this (LAPACK's Householder QR makes every Q[0,0] negative). Two-sided exact binomial
    test on the count of positive signs, false-alarm probability <= alpha; it can fail only once
    there are more than log2(2 / alpha) signs in all (24 at alpha = 1e-7)."""
    signs = np.concatenate([np.sign(np.diagonal(m)) for m in matrices])
    signs = signs[signs != 0]
    total, positive = signs.size, int(np.sum(signs > 0))
    pvalue = binomial_two_sided_pvalue(positive, total)
    return Check(
        name,
        total / 2,
        float(positive),
        alpha,
        pvalue >= alpha,
        f"positive diagonal signs of {total}; p-value {pvalue:.3g}",
    )


def binomial_two_sided_pvalue(k: int, total: int) -> float:
    """P(|X - total/2| >= |k - total/2|) for X ~ Binomial(total, 1/2), summed exactly in logs.

    >>> binomial_two_sided_pvalue(0, 24) < 1.2e-7 < binomial_two_sided_pvalue(0, 23)
    True
    """
    if total == 0:
        return 1.0
    low = min(k, total - k)
    log_half = total * math.log(0.5)
    tail = sum(
        math.exp(math.lgamma(total + 1) - math.lgamma(j + 1) - math.lgamma(total - j + 1) + log_half)
        for j in range(low + 1)
    )
    return min(1.0, 2 * tail) if 2 * low != total else 1.0


def _gram(matrix: np.ndarray, gain: float, dtype: str, name: str) -> Check:
    """max |Q Q^T - gain^2 I| over the shorter side. Rounding each entry to the dtype moves the
    diagonal by at most ~2 rounding units; float32 QR adds ~1e-6 sqrt(n)."""
    small = matrix if matrix.shape[0] <= matrix.shape[1] else matrix.T
    error = float(np.max(np.abs(small @ small.T - gain**2 * np.eye(small.shape[0]))))
    tolerance = gain**2 * (4 * _ROUNDING[dtype] + 2e-6 * math.sqrt(small.shape[1]))
    return Check(name, 0.0, error, tolerance, error <= tolerance)


REFERENCE_SEED = 20261129


def _against_reference(draws: list[np.ndarray], plan: Plan, alpha: float) -> list[Check]:
    """Expressions of several random leaves have no closed form: compare with a sample of
    ``REFERENCE_SIZE`` (4x ``FALLBACK_SAMPLES``) from the numpy reference backend (two-sample
    z-tests on mean and variance, two-sample KS)."""
    flat = np.concatenate([d.ravel() for d in draws])
    reference = _reference_sample(plan)
    z = z_value(alpha)
    results = []
    for name, f in (("mean (vs reference)", lambda x: x), ("variance (vs reference)", lambda x: (x - x.mean()) ** 2)):
        a, b = f(flat), f(reference)
        tolerance = z * math.sqrt(a.var() / a.size + b.var() / b.size) + _tolerance_of(float(b.mean()), plan.dtype)
        results.append(Check(name, float(b.mean()), float(a.mean()), tolerance, abs(a.mean() - b.mean()) <= tolerance))
    distance = _two_sample_ks(flat, reference)
    effective = flat.size * reference.size // (flat.size + reference.size)
    pvalue = kolmogorov_pvalue(distance, effective)
    results.append(
        Check(
            "KS p-value (vs reference)",
            alpha,
            pvalue,
            alpha,
            pvalue >= alpha,
            f"D={distance:.3g}, n={flat.size}, reference n={reference.size}",
        )
    )
    return results


# Reference samples of the last few plans: every backend's case of one expression compares with
# the same sample, and an elementwise expression shares it across shapes.
_REFERENCES: OrderedDict[tuple, np.ndarray] = OrderedDict()
REFERENCE_SIZE = 1 << 20


def _reference_sample(plan: Plan) -> np.ndarray:
    """``REFERENCE_SIZE`` (or more) values of ``plan`` from the numpy reference backend, flat and
    sorted (the statistics used here do not depend on order): one flat draw where the plan is
    elementwise iid, else whole draws."""
    from polyinit.backends.numpy import draw

    shape_free = n.elementwise_key(plan.root)
    key = (shape_free, plan.dtype) if shape_free is not None else (plan.spec, plan.shape, plan.layout, plan.dtype)
    if key not in _REFERENCES:
        rng = np.random.default_rng(REFERENCE_SEED)
        flat_plan = plan.flat(REFERENCE_SIZE)
        if flat_plan is not None:
            values = draw(flat_plan, rng)
        else:
            count = math.ceil(REFERENCE_SIZE / max(plan.size, 1))
            values = np.concatenate([draw(plan, rng).ravel() for _ in range(count)])
        sample = np.sort(values.astype(np.float64))
        sample.flags.writeable = False
        _REFERENCES[key] = sample
        while len(_REFERENCES) > 4:
            _REFERENCES.popitem(last=False)
    _REFERENCES.move_to_end(key)
    return _REFERENCES[key]


def _two_sample_ks(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b|, read at every point of either sample (the ECDFs only step there); ``b``
    sorted. Each sample's own ECDF at its points comes from its runs of ties, so only the cross
    terms need a search."""
    a = np.sort(a)
    at_a = _ecdf_at_own_points(a) / a.size - np.searchsorted(b, a, side="right") / b.size
    at_b = np.searchsorted(a, b, side="right") / a.size - _ecdf_at_own_points(b) / b.size
    return float(max(np.max(np.abs(at_a)), np.max(np.abs(at_b))))


def _ecdf_at_own_points(x: np.ndarray) -> np.ndarray:
    """For sorted ``x``: how many values are <= x[i], for each i (ties count to the run's end)."""
    positions = np.arange(1, x.size + 1)
    run_end = np.append(x[1:] != x[:-1], True)
    return np.minimum.accumulate(np.where(run_end, positions, x.size)[::-1])[::-1]


def _tolerance_of(value: float, dtype: str) -> float:
    return abs(value) * 2 * _ROUNDING[dtype] + 1e-300


def _support(draws: list[np.ndarray], stats: Stats, dtype: str) -> Check:
    low, high = stats.low, stats.high
    lo = min(float(d.min()) for d in draws)
    hi = max(float(d.max()) for d in draws)
    slack = max(
        _tolerance_of(low, dtype) if math.isfinite(low) else 0.0,
        _tolerance_of(high, dtype) if math.isfinite(high) else 0.0,
    )
    outside = lo < low - slack or hi > high + slack
    observed = lo if lo < low - slack else hi
    return Check(
        "support",
        low if observed == lo else high,
        observed,
        slack,
        not outside,
        f"every value in [{low:.6g}, {high:.6g}]",
    )


def _mean(flat: np.ndarray, stats: Stats, dtype: str, alpha: float) -> Check:
    mean, std = stats.mean, stats.std
    assert mean is not None and std is not None  # only plans with moments get here
    tolerance = z_value(alpha) * std / math.sqrt(flat.size) + _tolerance_of(mean, dtype)
    observed = float(flat.mean())
    return Check("mean", mean, observed, tolerance, abs(observed - mean) <= tolerance)


def _variance(flat: np.ndarray, stats: Stats, dtype: str, alpha: float) -> Check:
    var = stats.var
    assert var is not None  # only plans with moments get here
    kappa = stats.excess_kurtosis if stats.excess_kurtosis is not None else 0.0
    tolerance = z_value(alpha) * var * math.sqrt((kappa + 2) / flat.size)
    tolerance += var * 4 * _ROUNDING[dtype]
    observed = float(flat.var())
    return Check("variance", var, observed, tolerance, abs(observed - var) <= tolerance)


def _kurtosis(flat: np.ndarray, stats: Stats, alpha: float) -> Check:
    """t-test on per-batch excess kurtosis: each batch's statistic is nearly normal, and the
    batch spread estimates the standard error without needing the 8th moment."""
    expected = stats.excess_kurtosis
    assert expected is not None  # only plans with a promised kurtosis get here
    size = flat.size // KURTOSIS_BATCHES
    batches = flat[: size * KURTOSIS_BATCHES].reshape(KURTOSIS_BATCHES, size)
    centred = batches - batches.mean(axis=1, keepdims=True)
    square = centred * centred
    var = square.mean(axis=1)
    values = np.divide(np.mean(square * square, axis=1), var * var, out=np.full_like(var, 3.0), where=var > 0) - 3.0
    mean, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    # The batch statistic's own bias is about -6/size; allow twice that.
    tolerance = _t_quantile(alpha, len(values) - 1) * se + 12.0 / size
    return Check("excess kurtosis", expected, mean, tolerance, abs(mean - expected) <= tolerance)


def _t_quantile(alpha: float, dof: int) -> float:
    """Two-sided Student-t quantile (scipy when present, else a Cornish-Fisher expansion)."""
    try:
        from scipy.stats import t
    except ImportError:
        z = z_value(alpha)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        return z + g1 / dof + g2 / dof**2 + g3 / dof**3
    return float(t.ppf(1 - alpha / 2, dof))


def _zeros_per_slice(draws: list[np.ndarray], flat: np.ndarray, stats: Stats, dtype: str) -> Check:
    """Sparse: the count of zeros along the axis is exact in every slice."""
    assert stats.zeros_per_slice is not None  # _check dispatched on it
    axis, want = stats.zeros_per_slice
    counts = np.concatenate([np.sum(d == 0, axis=axis).ravel() for d in draws])
    worst = float(counts.min() if counts.min() < want else counts.max())
    # Never fewer than the mask's zeros; a few more only where the normal itself gave an exact
    # zero: a value below half the smallest subnormal in float16/bfloat16, and TensorFlow's
    # float32 normal returns 0.0 about once in 10^7 draws (seen in the 20-seed soak).
    extra = float(np.sum(counts - want))
    allowed = _EXTRA_ZEROS[dtype] * flat.size + 1
    passed = bool(np.all(counts >= want)) and float(np.median(counts)) == want and extra <= allowed
    return Check(
        "zeros per slice",
        want,
        worst,
        allowed,
        passed,
        f"exact count along the output axis; {extra:g} extra zeros in all",
    )


def _zero_fraction(flat: np.ndarray, stats: Stats, alpha: float) -> Check:
    expected = stats.zero_fraction
    assert expected is not None  # _check dispatched on it
    observed = float(np.mean(flat == 0))
    tolerance = z_value(alpha) * math.sqrt(expected * (1 - expected) / flat.size)
    return Check("zero fraction", expected, observed, tolerance, abs(observed - expected) <= tolerance)


def continuous_cdf(stats: Stats) -> Optional[Callable[[np.ndarray], np.ndarray]]:
    """The analytic CDF of the promise's one continuous law (``Stats.distribution``), or None."""
    law = stats.distribution
    if law is None:
        return None
    if law[0] == "uniform":
        lo, hi = law[1:]
        return lambda x: np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if law[0] == "normal":
        mu, sd = law[1:]
        return lambda x: _phi((x - mu) / sd)
    mu, sd, a, b = law[1:]
    fa, fb = normal_cdf(a), normal_cdf(b)
    return lambda x: np.clip((_phi((x - mu) / sd) - fa) / (fb - fa), 0.0, 1.0)


def _phi(z: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import ndtr
    except ImportError:
        return np.vectorize(normal_cdf)(z)
    return ndtr(z)


def kolmogorov_pvalue(d: float, size: int) -> float:
    """P(D_n >= d) by the asymptotic Kolmogorov series with Stephens' small-n correction."""
    root = math.sqrt(size)
    lam = (root + 0.12 + 0.11 / root) * d
    if lam < 0.2:
        return 1.0
    total = sum(2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(max(total, 0.0), 1.0)


def _ks(flat: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], dtype: str, alpha: float) -> Check:
    # Values of the narrower dtypes are exact in float32, whose sort is about twice as fast.
    x = np.sort(flat) if dtype == "float64" else np.sort(flat.astype(np.float32)).astype(np.float64)
    half_step = np.abs(x) * _ROUNDING[dtype] * 2 + np.finfo(np.float64).tiny
    size = x.size
    upper = cdf(x + half_step)
    lower = cdf(x - half_step)
    ranks = np.arange(1, size + 1) / size
    distance = float(max(np.max(ranks - upper), np.max(lower - (ranks - 1.0 / size)), 0.0))
    pvalue = kolmogorov_pvalue(distance, size)
    return Check("KS p-value", alpha, pvalue, alpha, pvalue >= alpha, f"D={distance:.3g}, n={size}")


def _exact(sample: np.ndarray, exact: np.ndarray, dtype: str) -> Check:
    error = float(np.max(np.abs(sample - exact))) if sample.size else 0.0
    tolerance = float(np.max(np.abs(exact))) * 2 * _ROUNDING[dtype] if exact.size else 0.0
    return Check("exact values", 0.0, error, tolerance, sample.shape == exact.shape and error <= tolerance)


def failures(results: Sequence[Check]) -> list[Check]:
    return [r for r in results if not r.passed]


# Power: the suite must detect a relative error of DETECT_STD_ERROR in std (a factor (1 +- e)^2 in
# variance) with probability POWER. Plans without a promised kurtosis (expressions of several
# draws, judged against a reference sample) use FALLBACK_SAMPLES.
DETECT_STD_ERROR = 0.02
POWER = 0.999
FALLBACK_SAMPLES = 1 << 18
# Draws for a plan whose promise holds in every single draw (orthogonality, zeros off a delta's
# centre): the checks are exact per draw, so more draws add time, not power.
STRUCTURAL_DRAWS = 4


def required_samples(plan: Plan, alpha: float = ALPHA, error: float = DETECT_STD_ERROR, power: float = POWER) -> int:
    """Elements the variance check needs to detect a relative std error of ``error`` with
    probability ``power`` at false-alarm probability ``alpha``, rounded up to a power of two.

    s^2 is about N(v, v^2 (kappa + 2) / n); the check's tolerance is z_a v0 sqrt((kappa + 2) / n)
    plus 4 rho v0 for the dtype's rounding rho. With v = (1 +- e)^2 v0 the miss probability is
    below 1 - power once

        n >= ((z_a + (1 +- e)^2 z_p) / (|(1 +- e)^2 - 1| - 4 rho))^2 (kappa + 2),

    which is 44,700 (kappa + 2) in float32 at alpha = 1e-7: 2^16 for a uniform (kappa = -1.2),
    2^17 for a normal. A Blocks plan needs that for each block; a deterministic plan needs none
    (0); a plan with no promised kurtosis gets ``FALLBACK_SAMPLES``.

    >>> from polyinit import Normal, resolve
    >>> required_samples(resolve(Normal(std=1.0), (10,)), alpha=1e-7)
    131072
    """
    if not plan.leaves:  # deterministic: one draw says everything
        return 0
    return _required(plan.stats, plan.dtype, alpha, error, power)


def _required(stats: Optional[Stats], dtype: str, alpha: float, error: float, power: float) -> int:
    if stats is not None and (stats.exact is not None or stats.low == stats.high):
        return 0  # a deterministic block: one draw says everything
    if stats is not None and stats.blocks is not None:  # each block is checked on its own share
        _axis, parts = stats.blocks
        if any(part is None for part in parts):
            return FALLBACK_SAMPLES
        return len(parts) * max(_required(part, dtype, alpha, error, power) for part in parts)
    kappa = stats.excess_kurtosis if stats is not None else None
    if kappa is None:
        return FALLBACK_SAMPLES
    z_alpha, z_power = z_value(alpha), NormalDist().inv_cdf(power)
    rounding = 4 * _ROUNDING[dtype]
    needed = 0.0
    for factor in ((1 - error) ** 2, (1 + error) ** 2):
        margin = abs(factor - 1) - rounding
        if margin <= 0:
            raise PolyinitError(
                f"required_samples: a {error:.3g} relative std error is inside {dtype}'s "
                f"rounding allowance ({rounding:.3g} in variance); no sample size detects it"
            )
        needed = max(needed, ((z_alpha + factor * z_power) / margin) ** 2 * (kappa + 2))
    return 1 << max(10, math.ceil(math.log2(needed)))


def samples_needed(plan: Plan, minimum: Optional[int] = None) -> int:
    """How many independent draws of ``plan`` reach ``minimum`` elements (default: the plan's
    ``required_samples``).

    One for a deterministic plan, at most ``STRUCTURAL_DRAWS`` for one whose checks are exact per
    draw (orthogonal, delta-orthogonal); statistical plans get ``ceil(minimum / size)``.
    """
    if not plan.leaves:
        return 1
    if minimum is None:
        minimum = required_samples(plan)
    count = max(1, math.ceil(minimum / max(plan.size, 1)))
    stats = plan.stats
    if stats is not None and (stats.delta is not None or stats.orthogonal is not None):
        return min(count, STRUCTURAL_DRAWS)
    return count
