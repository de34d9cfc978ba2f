"""Property-based fuzz over specs x shapes x dtypes x layouts, through each backend: every attempt
either raises a PolyinitError, or draws finite values of the right shape inside the promised support
(the plan's ``stats`` where it has them, and always the interval hull ``polyinit.support`` proves).
Never another exception.

Deterministic (``derandomize=True``, no example database) and bounded (a fixed number of small
examples per backend), so it runs in seconds in CI and fails the same way on every run.
"""

import math

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import polyinit as pi
from polyinit.support import intervals, rounding_allowance

# Ordinary numbers, and a few that push towards refusals (zero, huge, tiny).
ORDINARY = st.floats(-8.0, 8.0)
EDGES = st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-3, 3e4, 1e5, 1e30, 1e200, -1e38])
# (one_of flattens repeated branches, so the 3:1 weighting goes through an integer draw)
NUMBERS = st.integers(0, 3).flatmap(lambda i: EDGES if i == 3 else ORDINARY)
SMALL = st.floats(0.001, 8.0)
POSITIVE = st.integers(0, 3).flatmap(lambda i: st.sampled_from([1e-6, 3e4, 1e30, 1e200]) if i == 3 else SMALL)
STREAM = st.integers(0, 2)


# Strategies give *recipes* (functions that build the spec), so building a spec is part of the
# attempt: a spec refused when built is as good an outcome as a plan refused when resolved.


def _recipe(build, *parts):
    return lambda: build(*(p() if callable(p) else p for p in parts))


@st.composite
def uniforms(draw):
    low, width, stream = draw(NUMBERS), draw(POSITIVE), draw(STREAM)
    return lambda: pi.Uniform(low=low, high=low + width, stream=stream)


@st.composite
def truncated(draw):
    mean, std, low = draw(NUMBERS), draw(POSITIVE), draw(st.floats(-3.0, 1.0))
    width, keep, stream = draw(st.floats(0.5, 4.0)), draw(st.booleans()), draw(STREAM)
    return lambda: pi.TruncatedNormal(
        mean=mean, std=std, low=low, high=low + width, bounds="std", preserve_std=keep, stream=stream
    )


ELEMENTWISE = st.one_of(
    uniforms(),
    st.builds(lambda m, s, k: _recipe(lambda: pi.Normal(mean=m, std=s, stream=k)), NUMBERS, POSITIVE, STREAM),
    truncated(),
    st.builds(lambda v: _recipe(lambda: pi.Constant(value=v)), NUMBERS),
    st.builds(
        lambda s, m, d: _recipe(lambda: pi.VarianceScaling(scale=s, mode=m, distribution=d)),
        POSITIVE,
        st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]),
        st.sampled_from(["normal", "truncated_normal", "uniform"]),
    ),
)
STRUCTURED = st.one_of(
    st.builds(
        lambda g, a: _recipe(lambda: pi.Orthogonal(gain=g, axis=a)), NUMBERS, st.sampled_from(["out", "in", 0, -1])
    ),
    st.builds(lambda g: _recipe(lambda: pi.Identity(gain=g)), NUMBERS),
    st.builds(lambda g: _recipe(lambda: pi.Dirac(gain=g)), NUMBERS),
    st.builds(lambda g: _recipe(lambda: pi.DeltaOrthogonal(gain=g)), NUMBERS),
    st.builds(lambda p, s: _recipe(lambda: pi.Sparse(sparsity=p, std=s)), st.floats(0.0, 1.0), POSITIVE),
    st.just(pi.BilinearUpsampling),
)
# Elementwise leaves fit every shape; the structured ones (conv kernels, matrices) mostly test
# refusals, so they come a third of the time.
LEAVES = st.integers(0, 2).flatmap(lambda i: STRUCTURED if i == 2 else ELEMENTWISE)

BINARY = ["add", "sub", "mul", "div", "ge", "gt", "le", "lt", "minimum", "maximum"]


def _binary(op, left, right):
    return pi.spec.Binary(op=op, left=left, right=right)


def _extend(children):
    return st.one_of(
        st.builds(lambda op, a, b: _recipe(_binary, op, a, b), st.sampled_from(BINARY), children, children),
        st.builds(
            lambda op, a: _recipe(lambda x: pi.spec.Unary(op=op, operand=x), a),
            st.sampled_from(["neg", "abs"]),
            children,
        ),
        st.builds(lambda c, a, b: _recipe(pi.where, c, a, b), children, children, children),
        st.builds(
            lambda a, low, width: _recipe(lambda x: pi.clip(x, low, low + width), a), children, NUMBERS, POSITIVE
        ),
        st.builds(
            lambda parts: _recipe(lambda *ps: pi.Blocks(axis="out", parts=ps), *parts),
            st.lists(children, min_size=1, max_size=3),
        ),
    )


SPECS = st.recursive(LEAVES, _extend, max_leaves=6)
SHAPES = st.sampled_from([(), (1,), (7,), (12,), (4, 6), (6, 4), (1, 1), (8, 4, 3, 3), (3, 3, 4, 8), (0, 3)])
LAYOUTS = st.sampled_from([None, pi.OUT_IN, pi.IN_OUT, "out in", "in out out"])


def attempt(backend, recipe, shape, layout, dtype, seed):
    """Build, resolve and draw through the backend's conformance hook; None when polyinit refused
    with its own error."""
    try:
        plan = pi.resolve(recipe(), shape, layout, dtype)
        values = backend.to_numpy(backend.sample_plan(plan, seed))
        stats = plan.stats
    except pi.PolyinitError:
        return None
    return plan, values, stats


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(recipe=SPECS, shape=SHAPES, layout=LAYOUTS, data=st.data())
def test_fuzz_polyinit_error_or_finite_values_in_the_promised_support(backend, recipe, shape, layout, data):
    dtype = data.draw(st.sampled_from(backend.DTYPES), label="dtype")
    outcome = attempt(backend, recipe, shape, layout, dtype, seed=data.draw(st.integers(0, 3), label="seed"))
    event("refused with a PolyinitError" if outcome is None else "drawn")
    if outcome is None:
        return
    plan, values, stats = outcome
    assert values.shape == plan.shape
    if plan.size == 0:
        return
    assert np.isfinite(values).all(), f"non-finite values from {plan.describe()}"
    slack = rounding_allowance(plan.root, dtype)
    hull = intervals(plan.root, dtype)[id(plan.root)].support
    assert hull.low - slack <= values.min() and values.max() <= hull.high + slack, (
        f"values in [{values.min()}, {values.max()}] outside the proven hull {hull} of {plan.describe()}"
    )
    if stats is not None:
        # A promise is finite numbers or no numbers, never an inf or a NaN.
        assert stats.moments is None or all(math.isfinite(m) for m in stats.moments), stats
        # Quadrature-based supports come from a 2^20-point grid: allow a few grid steps more.
        span = stats.high - stats.low if math.isfinite(stats.high - stats.low) else 0.0
        tolerance = slack + span * 2.0**-18
        assert stats.low - tolerance <= values.min() and values.max() <= stats.high + tolerance, (
            f"values in [{values.min()}, {values.max()}] outside the promised "
            f"[{stats.low}, {stats.high}] of {plan.describe()}"
        )
