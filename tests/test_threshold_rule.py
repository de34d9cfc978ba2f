"""The seed's custom rule "w ~ U(-10, 10); w <- w * 1[|w| >= 5]" is one spec expression."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends.numpy import sample


def threshold_rule():
    w = pi.Uniform(low=-10.0, high=10.0)
    return w * (abs(w) >= 5)


def test_one_expression_one_draw():
    plan = pi.resolve(threshold_rule(), (100, 100))
    assert len(plan.leaves) == 1  # both uses of w are the same draw


def test_samples_have_expected_statistics():
    x = sample(threshold_rule(), (1000, 1000), rng=np.random.default_rng(3), dtype="float64")
    zeros = np.mean(x == 0)
    # P(|w| < 5) = 1/2; with n = 1e6 the binomial sd is 5e-4, so 0.003 is 6 sd (alpha ~ 2e-9).
    assert abs(zeros - 0.5) < 0.003
    nonzero = np.abs(x[x != 0])
    assert nonzero.min() >= 5 and nonzero.max() < 10


def test_plan_promises_closed_form_moments():
    stats = pi.resolve(threshold_rule(), (10,)).stats
    # E[x^2] = (1/20) * 2 * integral_5^10 x^2 dx = (1000 - 125) / 30.
    assert stats.var == pytest.approx(875 / 30, rel=1e-5)
    assert stats.zero_fraction == pytest.approx(0.5, abs=1e-5)
    assert stats.mean == pytest.approx(0.0, abs=1e-9)


def test_independent_streams_are_independent_draws():
    a = pi.Uniform(low=-1.0, high=1.0)
    b = pi.Uniform(low=-1.0, high=1.0, stream=1)
    assert len(pi.resolve(a + b, (4,)).leaves) == 2
    assert len(pi.resolve(a + a, (4,)).leaves) == 1


def test_where_and_clip():
    w = pi.Normal(std=1.0)
    x = sample(pi.where(abs(w) < 2, w, 0.0), (200, 200), rng=np.random.default_rng(0))
    assert np.abs(x).max() < 2
    y = sample(pi.clip(w, -0.5, 0.5), (200, 200), rng=np.random.default_rng(0))
    assert y.min() == -0.5 and y.max() == 0.5
