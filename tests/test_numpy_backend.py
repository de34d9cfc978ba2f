"""numpy samples of every scheme against the plan's promise (alpha = 1e-6 per check, fixed seeds)."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends.numpy import DTYPES, draw, sample
from polyinit.conformance import check, failures, samples_needed

SCHEMES = {
    "glorot_uniform": pi.glorot_uniform(),
    "glorot_normal": pi.glorot_normal(),
    "he_uniform": pi.he_uniform(),
    "he_normal_truncated": pi.he_normal(truncated=True),
    "lecun_uniform": pi.lecun_uniform(),
    "lecun_normal_truncated": pi.lecun_normal(truncated=True),
    "torch_trunc_normal": pi.TruncatedNormal(std=0.02, bounds="absolute"),
    "asymmetric_truncated": pi.TruncatedNormal(mean=0.1, std=0.5, low=-0.5, high=2.5, bounds="std", preserve_std=True),
    "orthogonal": pi.Orthogonal(gain=1.5),
    "sparse": pi.Sparse(sparsity=0.25, std=0.05),
    "constant": pi.constant(0.25),
    "lstm_bias": pi.lstm_bias(),
    "threshold": (lambda w: w * (abs(w) >= 5))(pi.Uniform(low=-10.0, high=10.0)),
}
SHAPES = {"dense": ((256, 784), pi.OUT_IN), "conv2d": ((3, 3, 16, 32), pi.IN_OUT)}


# Sparse is 2-D only (as torch's sparse_), so it is not paired with the conv shape.
PAIRS = [(scheme, shape) for scheme in SCHEMES for shape in SHAPES if not (scheme == "sparse" and shape != "dense")]


@pytest.mark.parametrize("dtype", [d for d in ("float32", "float64", "float16", "bfloat16") if d in DTYPES])
@pytest.mark.parametrize("scheme,shape_name", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_samples_match_plan(scheme, shape_name, dtype):
    shape, layout = SHAPES[shape_name]
    plan = pi.resolve(SCHEMES[scheme], shape, layout, dtype)
    rng = np.random.default_rng(20261129)
    draws = [draw(plan, rng) for _ in range(samples_needed(plan))]
    assert all(d.dtype.name == dtype for d in draws)
    results = check(draws, plan)
    assert results, "no check applied"
    assert not failures(results), "\n".join(map(str, failures(results)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_bytes_other_seed_other_values(scheme):
    spec = SCHEMES[scheme]
    first = sample(spec, (64, 32), rng=np.random.default_rng(7), layout=pi.OUT_IN)
    again = sample(spec, (64, 32), rng=np.random.default_rng(7), layout=pi.OUT_IN)
    assert first.tobytes() == again.tobytes()
    other = sample(spec, (64, 32), rng=np.random.default_rng(8), layout=pi.OUT_IN)
    if pi.resolve(spec, (64, 32), pi.OUT_IN).leaves:
        assert first.tobytes() != other.tobytes()


def test_global_rng_is_refused():
    with pytest.raises(pi.PolyinitError, match="Generator"):
        sample(pi.Uniform(), (3,), rng=np.random)  # type: ignore[arg-type]


def test_deterministic_schemes_exact():
    eye = sample(pi.Identity(gain=2.0), (3, 5), rng=np.random.default_rng(0))
    assert np.array_equal(eye, 2.0 * np.eye(3, 5, dtype=np.float32))
    assert sample(pi.zeros(), (0, 3), rng=np.random.default_rng(0)).shape == (0, 3)


def test_a_wrong_sample_fails_the_checks():
    # The checks can fail: a uniform with a bound off by sqrt(3) is caught.
    plan = pi.resolve(pi.glorot_uniform(), (256, 784), pi.OUT_IN)
    wrong = pi.resolve(pi.glorot_uniform(gain=3**0.5), (256, 784), pi.OUT_IN)
    assert failures(check(draw(wrong, np.random.default_rng(0)), plan))
