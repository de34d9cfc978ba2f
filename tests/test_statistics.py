"""The conformance statistics themselves: sample sizes that deliver the promised power, the
two-sample KS distance, and the structural keys that let reference samples and JAX programs be
shared."""

import numpy as np
import pytest

import polyinit as pi
from polyinit import nodes as n
from polyinit.conformance.checks import STRUCTURAL_DRAWS, _two_sample_ks, check, required_samples, samples_needed
from polyinit.conformance.runner import SUITE_ALPHA as ALPHA


def _brute_force_ks(a, b):
    points = np.concatenate([a, b])
    return max(abs(np.mean(a <= t) - np.mean(b <= t)) for t in points)


@pytest.mark.parametrize("ties", [False, True])
def test_two_sample_ks_matches_its_definition(ties):
    rng = np.random.default_rng(7)
    for _ in range(10):
        a = rng.standard_normal(rng.integers(1, 300))
        b = rng.standard_normal(rng.integers(1, 700)) * rng.choice([1.0, 1.3])
        if ties:  # float16-like steps: many equal values within and across the samples
            a, b = np.round(a * 3) / 3, np.round(b * 3) / 3
        assert _two_sample_ks(a, np.sort(b)) == pytest.approx(_brute_force_ks(a, b), abs=1e-12)


@pytest.mark.parametrize(
    "spec,size",
    [
        (pi.Uniform(low=-1.0, high=1.0), 1 << 16),
        (pi.Normal(std=1.0), 1 << 17),
        (pi.TruncatedNormal(std=1.0, bounds="std"), 1 << 16),
        (pi.Sparse(sparsity=0.25, std=1.0), 1 << 18),
    ],
)
def test_required_samples_follow_the_kurtosis(spec, size):
    # 44,700 (kappa + 2) rounded up to a power of two (conformance/README.md).
    assert required_samples(pi.resolve(spec, (256, 784), pi.OUT_IN), ALPHA) == size


def test_half_precision_needs_more_samples_for_the_same_power():
    plan = {d: pi.resolve(pi.Normal(std=1.0), (64, 64), pi.OUT_IN, d) for d in ("float32", "bfloat16")}
    assert required_samples(plan["bfloat16"], ALPHA) > required_samples(plan["float32"], ALPHA)


@pytest.mark.parametrize("spec", [pi.Uniform(low=-1.0, high=1.0), pi.Normal(std=1.0)])
@pytest.mark.parametrize("factor", [0.98, 1.02])
def test_a_two_percent_std_error_is_caught_at_the_required_size(spec, factor):
    """The power claim, sampled: 20 fixed seeds of a backend whose std is 2% off, at exactly
    required_samples, and the variance check must fail every one (miss probability <= 1e-3 each)."""
    plan = pi.resolve(spec, (1 << 10,), None)
    size = required_samples(plan, ALPHA)
    for seed in range(20):
        x = factor * np.asarray(pi.get_backend("numpy").draw(plan.flat(size), np.random.default_rng(seed)))
        variance = [c for c in check(x, plan, ALPHA) if c.name == "variance"]
        assert variance and not variance[0].passed, (seed, str(variance[0]))


def test_structural_and_deterministic_plans_need_few_draws():
    small = (3, 3, 2, 16)
    orthogonal = pi.resolve(pi.Orthogonal(), small, pi.IN_OUT)
    delta = pi.resolve(pi.DeltaOrthogonal(), small, pi.IN_OUT)
    uniform = pi.resolve(pi.Uniform(low=0.0, high=1.0), small, pi.IN_OUT)
    assert samples_needed(orthogonal) == samples_needed(delta) == STRUCTURAL_DRAWS
    assert samples_needed(pi.resolve(pi.Identity(), (4, 4), pi.OUT_IN)) == 1
    assert samples_needed(uniform) == required_samples(uniform) // uniform.size + 1


def test_elementwise_key_ignores_shape_but_not_numbers_or_sharing():
    w = pi.Uniform(low=-1.0, high=1.0)
    key = lambda spec, shape: n.elementwise_key(pi.resolve(spec, shape).root)
    assert key(w * w, (10,)) == key(w * w, (7, 3))
    assert key(w * w, (10,)) != key(w * pi.Uniform(low=-1.0, high=1.0, stream=1), (10,))  # one variable vs two
    assert key(w * 2.0, (10,)) != key(w * 3.0, (10,))
    assert n.elementwise_key(pi.resolve(pi.Orthogonal(), (4, 4), pi.OUT_IN).root) is None


def test_structure_key_has_every_shape_and_number():
    def key(spec, shape):
        plan = pi.resolve(spec, shape)
        return n.structure(plan.root, plan.leaf_index)[0]

    w = pi.Uniform(low=-10.0, high=10.0)
    assert key(w * (abs(w) >= 5), (8, 8)) == key(w * (abs(w) >= 5), (8, 8))
    assert key(w * (abs(w) >= 5), (8, 8)) != key(w * (abs(w) >= 6), (8, 8))
    assert key(w * (abs(w) >= 5), (8, 8)) != key(w * (abs(w) >= 5), (64,))


def test_blocks_get_the_required_size_for_each_block():
    parts = (pi.Normal(std=1.0), pi.Uniform(low=-1.0, high=1.0), pi.Normal(std=2.0), pi.constant(1.0))
    plan = pi.resolve(pi.Blocks(axis="out", parts=parts), (256,), pi.OUT_IN)
    assert required_samples(plan, ALPHA) == 4 * required_samples(pi.resolve(pi.Normal(std=1.0), (64,)), ALPHA)


def test_an_error_inside_the_rounding_allowance_is_refused():
    plan = pi.resolve(pi.Normal(std=1.0), (64,), None, "bfloat16")
    with pytest.raises(pi.PolyinitError, match="rounding allowance"):
        required_samples(plan, ALPHA, error=0.005)
