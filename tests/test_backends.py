"""One spec object, every backend: native draws match the plan's promise; seeds behave."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.conformance import check, failures, samples_needed

SPECS = {
    "glorot_uniform": pi.glorot_uniform(),
    "he_normal_truncated": pi.he_normal(truncated=True),
    "torch_trunc_normal_tiny_std": pi.TruncatedNormal(std=0.001, bounds="absolute"),
    "orthogonal": pi.Orthogonal(gain=1.5),
    "sparse": pi.Sparse(sparsity=0.25, std=0.05),
    "identity": pi.Identity(gain=2.0),
    "lstm_bias_blocks": pi.lstm_kernel(i=pi.glorot_uniform(), f=pi.zeros(), g=pi.Normal(std=0.1), o=pi.ones()),
    "threshold": (lambda w: w * (abs(w) >= 5))(pi.Uniform(low=-10.0, high=10.0)),
}


@pytest.mark.parametrize("name", SPECS)
def test_one_spec_every_backend_matches_plan(backend, name):
    plan = pi.resolve(SPECS[name], (512, 128), pi.IN_OUT, "float32")
    draws = [backend.to_numpy(backend.sample_plan(plan, seed)) for seed in range(samples_needed(plan))]
    assert draws[0].shape == (512, 128)
    results = check(draws, plan)
    assert results and not failures(results), "\n".join(map(str, failures(results)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_dtypes(backend, dtype):
    if dtype not in backend.DTYPES:
        with pytest.raises(pi.PolyinitError):
            backend.sample_plan(pi.resolve(pi.glorot_uniform(), (64, 32), pi.IN_OUT, dtype), 0)
        return
    plan = pi.resolve(pi.glorot_normal(truncated=True), (256, 256), pi.IN_OUT, dtype)
    draws = [backend.to_numpy(backend.sample_plan(plan, seed)) for seed in range(4)]
    assert not failures(check(draws, plan))


def test_seed_determinism(backend):
    plan = pi.resolve(pi.Orthogonal() + pi.Normal(std=0.1), (32, 16), pi.IN_OUT)
    first = backend.to_numpy(backend.sample_plan(plan, 11))
    assert np.array_equal(first, backend.to_numpy(backend.sample_plan(plan, 11)))
    assert not np.array_equal(first, backend.to_numpy(backend.sample_plan(plan, 12)))


def test_zero_size(backend):
    plan = pi.resolve(pi.glorot_uniform(), (0, 16), pi.IN_OUT)
    assert backend.to_numpy(backend.sample_plan(plan, 0)).shape == (0, 16)


def test_missing_framework_names_the_extra(monkeypatch):
    from polyinit import backends

    monkeypatch.setitem(
        backends.REGISTRY, "fakeframe", ("polyinit.backends.fakeframe", "no_such_framework_xyz", "fakeframe")
    )
    with pytest.raises(pi.BackendUnavailableError, match=r"pip install 'polyinit\[fakeframe\]'"):
        backends.get_backend("fakeframe")


def test_unknown_backend():
    with pytest.raises(pi.PolyinitError, match="unknown backend 'caffe'"):
        pi.get_backend("caffe")
