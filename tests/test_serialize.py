"""Specs round-trip exactly through dicts and JSON; invalid documents and arguments raise PolyinitError."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyinit as pi
from polyinit.spec import DISTRIBUTIONS, MODES

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
stream = st.integers(min_value=0, max_value=5)


@st.composite
def uniforms(draw):
    low = draw(finite)
    return pi.Uniform(low=low, high=low + draw(positive), stream=draw(stream))


@st.composite
def truncated(draw):
    bounds = draw(st.sampled_from(["std", "absolute"]))
    low = draw(st.floats(min_value=-3, max_value=0.5))
    high = low + draw(st.floats(min_value=0.5, max_value=4))
    std = draw(st.floats(min_value=0.01, max_value=10))
    mean = draw(st.floats(min_value=-1, max_value=1))
    if bounds == "absolute":
        low, high = mean + low * std, mean + high * std
    return pi.TruncatedNormal(
        mean=mean,
        std=std,
        low=low,
        high=high,
        bounds=bounds,
        preserve_std=draw(st.booleans()) and bounds == "std",
        stream=draw(stream),
    )


leaves = st.one_of(
    finite.map(lambda v: pi.Constant(value=v)),
    uniforms(),
    st.builds(lambda m, s, k: pi.Normal(mean=m, std=s, stream=k), finite, positive, stream),
    truncated(),
    st.builds(
        lambda s, m, d: pi.VarianceScaling(scale=s, mode=m, distribution=d),
        positive,
        st.sampled_from(MODES),
        st.sampled_from(DISTRIBUTIONS),
    ),
    st.builds(lambda g, a: pi.Orthogonal(gain=g, axis=a), finite, st.sampled_from(["out", "in", 0, -1])),
    st.builds(lambda g: pi.Identity(gain=g), finite),
    st.builds(lambda g, k: pi.Dirac(gain=g, groups=k), finite, st.integers(1, 8)),
    st.builds(lambda s, d: pi.Sparse(sparsity=s, std=d), st.floats(0, 1), positive),
    st.just(pi.BilinearUpsampling()),
    st.builds(lambda g: pi.DeltaOrthogonal(gain=g), finite),
)


def expressions(children):
    return st.one_of(
        st.builds(
            lambda a, b, op: pi.spec.Binary(op=op, left=a, right=b),
            children,
            children,
            st.sampled_from(pi.spec.BINARY_OPS),
        ),
        st.builds(lambda a, op: pi.spec.Unary(op=op, operand=a), children, st.sampled_from(pi.spec.UNARY_OPS)),
        st.builds(pi.where, children, children, children),
        st.builds(
            lambda parts, axis: pi.Blocks(axis=axis, parts=parts),
            st.lists(children, min_size=1, max_size=4),
            st.sampled_from(["out", "in", 0]),
        ),
    )


specs = st.recursive(leaves, expressions, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(specs)
def test_round_trip_is_exact(spec):
    assert pi.from_dict(pi.to_dict(spec)) == spec
    text = pi.to_json(spec)
    assert pi.from_json(text) == spec
    assert pi.to_json(pi.from_json(text)) == text


def test_schema_tag_and_shape_of_document():
    doc = pi.to_dict(pi.glorot_uniform())
    assert doc == {
        "polyinit": 1,
        "spec": {"kind": "variance_scaling", "scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "stream": 0},
    }
    assert json.loads(pi.to_json(pi.glorot_uniform())) == doc


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"polyinit": 2, "spec": {"kind": "constant", "value": 1.0}}, "version"),
        ({"polyinit": True, "spec": {"kind": "constant", "value": 1.0}}, "version"),
        ({"spec": {"kind": "constant", "value": 1.0}}, "version"),
        ({"polyinit": 1, "spec": {"kind": "gaussian", "std": 1.0}}, "unknown kind 'gaussian'"),
        ({"polyinit": 1, "spec": {"kind": "normal", "sigma": 1.0}}, r"unknown key\(s\) \['sigma'\]"),
        ({"polyinit": 1, "spec": {"kind": "normal", "std": -1.0}}, "std must be > 0"),
        ({"polyinit": 1, "spec": {"kind": "truncated_normal", "std": 1.0}}, "bounds"),
        ({"polyinit": 1, "spec": {"kind": "constant", "value": 1.0}, "extra": 1}, "top-level"),
        ({"polyinit": 1, "spec": [1, 2]}, "spec object"),
        ([1], "expected a dict"),
    ],
)
def test_bad_documents(doc, match):
    with pytest.raises(pi.SerializationError, match=match):
        pi.from_dict(doc)


def test_bad_json_text():
    with pytest.raises(pi.SerializationError, match="JSON"):
        pi.from_json("{not json")


def test_infinite_truncation_bounds_round_trip():
    half_normal = pi.TruncatedNormal(low=0.0, high=math.inf, bounds="std")
    assert pi.from_json(pi.to_json(half_normal)) == half_normal
