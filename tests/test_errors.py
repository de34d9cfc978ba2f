"""Every invalid argument is rejected when the spec is built, naming the argument and the value."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import polyinit as pi

BAD = [
    (lambda: pi.Normal(std=-1.0), "std must be > 0, received std=-1.0"),
    (lambda: pi.Normal(std=math.nan), "std must be finite"),
    (lambda: pi.Normal(std=True), "std must be a real number, received std=True"),
    (lambda: pi.Normal(mean="0"), "mean must be a real number"),
    (lambda: pi.Uniform(low=1.0, high=1.0), "low must be < high"),
    (lambda: pi.Uniform(low=2.0, high=1.0), "low must be < high"),
    (lambda: pi.VarianceScaling(mode="fan_mean"), "unknown mode 'fan_mean'"),
    (lambda: pi.VarianceScaling(distribution="gaussian"), "unknown distribution 'gaussian'"),
    (lambda: pi.VarianceScaling(scale=0.0), "scale must be > 0"),
    (lambda: pi.he_uniform(nonlinearity="gelu"), "unsupported nonlinearity 'gelu'"),
    (lambda: pi.calculate_gain("leaky_relu", True), "received param=True"),
    (lambda: pi.Sparse(sparsity=1.5), r"sparsity must be in \[0, 1\]"),
    (lambda: pi.Sparse(sparsity=-0.1), r"sparsity must be in \[0, 1\]"),
    (lambda: pi.TruncatedNormal(bounds="sigma"), "unknown bounds 'sigma'"),
    (lambda: pi.TruncatedNormal(bounds="absolute", preserve_std=True), "preserve_std=True needs bounds='std'"),
    (lambda: pi.TruncatedNormal(low=8.0, high=9.0, bounds="std"), "mass"),
    (lambda: pi.Dirac(groups=0), "groups must be >= 1"),
    (lambda: pi.Orthogonal(axis="rows"), "unknown axis 'rows'"),
    (lambda: pi.Blocks(parts=()), "parts must be a non-empty sequence"),
    (lambda: pi.Uniform(stream=-1), "stream must be >= 0"),
    (lambda: pi.clip(pi.Normal(), 1.0, 0.0), "low must be < high"),
    (lambda: pi.Uniform() * "x", "operand must be a real number"),
    (lambda: pi.glorot_normal(truncated="yes"), "truncated must be a bool"),
    (lambda: pi.lstm_bias(gate_order="ifg"), "gate_order"),
]


@pytest.mark.parametrize("build,match", BAD, ids=[m for _, m in BAD])
def test_invalid_arguments_raise_polyinit_error(build, match):
    with pytest.raises(pi.SpecError, match=match):
        build()


def test_keyword_only():
    with pytest.raises(TypeError):
        pi.Normal(0.0, 1.0)  # type: ignore[misc]


def test_specs_are_frozen():
    spec = pi.Normal(std=1.0)
    with pytest.raises(AttributeError):
        spec.std = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(3, -1), (2.5,), "ab", None], ids=str)
def test_bad_shapes(shape):
    with pytest.raises(pi.ShapeError, match="shape"):
        pi.resolve(pi.Normal(), shape)


def test_bad_dtype():
    with pytest.raises(pi.ShapeError, match="int8"):
        pi.resolve(pi.Normal(), (2,), dtype="int8")


def test_error_family_is_value_error():
    assert issubclass(pi.PolyinitError, ValueError)


@given(st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.none(), st.integers()))
def test_normal_std_accepts_positive_finite_numbers_only(value):
    valid = not isinstance(value, (bool, str, type(None))) and math.isfinite(value) and value > 0
    if valid:
        assert pi.Normal(std=value).std == float(value)
    else:
        with pytest.raises(pi.PolyinitError):
            pi.Normal(std=value)


@given(st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.none()), st.sampled_from(["sparsity", "std"]))
def test_sparse_arguments_raise_only_polyinit_error(value, name):
    kwargs = {"sparsity": 0.5, "std": 0.01, name: value}
    try:
        pi.Sparse(**kwargs)
    except pi.PolyinitError:
        pass
