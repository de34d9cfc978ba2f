"""Conformance of portable draws: each plan's samples against the plan's closed-form promise
(``polyinit.conformance.check``), 10^6 values per plan, fixed seeds.

Every check has false-alarm probability 1e-6 (the conformance default); this file runs about 80
checks, so a correct implementation fails it with probability below 1e-4. Portable values are the
same bits in every backend (tests/test_portable.py), so checking the numpy draws checks them all.
"""

import math

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends.numpy import draw_portable
from polyinit.conformance import check, failures, z_value

VALUES = 10**6
PLANS = {
    "uniform": (pi.Uniform(low=-0.3, high=0.7), (1000, 1000)),
    "normal": (pi.Normal(mean=0.1, std=2.0), (1000, 1000)),
    "truncated_std": (pi.TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds="std"), (1000, 1000)),
    "truncated_torch": (pi.TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute"), (1000, 1000)),
    "truncated_one_sided": (pi.TruncatedNormal(std=1.0, low=0.5, high=4.0, bounds="std"), (1000, 1000)),
    "truncated_far_tail": (pi.TruncatedNormal(std=1.0, low=-4.5, high=-3.5, bounds="std"), (1000, 1000)),
    "glorot_uniform": (pi.glorot_uniform(), (1000, 1000)),
    "he_normal": (pi.he_normal(), (1000, 1000)),
    "lecun_normal_truncated": (pi.lecun_normal(truncated=True), (1000, 1000)),
    "expression": (pi.clip(2.0 * pi.Normal(std=1.0) + 0.5, -2.5, 2.5), (1000, 1000)),
    "lstm_bias": (pi.lstm_bias(base=pi.Normal(std=0.1)), (4000, 250)),
    "sparse": (pi.Sparse(sparsity=0.3, std=0.5), (1000, 1000)),
}


@pytest.mark.parametrize("name", list(PLANS))
def test_portable_draws_keep_the_plans_promise(name):
    spec, shape = PLANS[name]
    plan = pi.resolve(spec, shape, pi.OUT_IN)
    assert plan.size == VALUES
    results = check(draw_portable(plan, 20240611, f"stats.{name}"), plan)
    assert results and not failures(results), "\n".join(map(str, failures(results)))


def test_streams_are_uncorrelated():
    """Pearson correlation between two parameters' streams, two seeds and a plan's two leaves is
    within z(1e-6) / sqrt(n) of 0 (about N(0, 1/n) for independent streams)."""
    plan = pi.resolve(pi.Normal(std=1.0), (VALUES,))
    a, b = draw_portable(plan, 1, "layer.0.weight"), draw_portable(plan, 1, "layer.1.weight")
    c = draw_portable(plan, 2, "layer.0.weight")
    bound = z_value(1e-6) / math.sqrt(VALUES)
    two_leaves = pi.resolve(pi.Normal(std=1.0) - pi.Normal(std=1.0, stream=1), (VALUES,))
    first, second = (
        draw_portable(pi.resolve(pi.Normal(std=1.0), (VALUES,)), 1, "w"),
        draw_portable(two_leaves, 1, "w"),
    )
    for x, y in ((a, b), (a, c), (a[1:], a[:-1]), (first, second - first)):  # second - first = -leaf 1
        assert abs(np.corrcoef(x, y)[0, 1]) < bound
