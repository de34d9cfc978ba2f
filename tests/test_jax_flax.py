"""JAX/Flax specifics: pure, jit-able, key-only randomness; linen and nnx layers accept the inits."""

import numpy as np
import pytest

jax = __import__("jax")
import jax.numpy as jnp
from flax import linen, nnx

import polyinit as pi
from polyinit.backends.jax import initializer
from polyinit.conformance import check, failures

_W = pi.Uniform(low=-1.0, high=1.0)


# Shapes below and above the backend's SHARED_SIZE (small tensors slice one shared-size draw),
# so eager and jitted calls must agree on that rule too.
@pytest.mark.parametrize(
    "spec",
    [
        pi.glorot_uniform() + pi.Normal(std=0.01),
        pi.lecun_normal(truncated=True),
        pi.Orthogonal(gain=2.0),
        _W * (abs(_W) >= 0.5),
        pi.lstm_bias(1.0) * _W,
    ],
    ids=["sum", "truncated", "orthogonal", "threshold", "blocks"],
)
@pytest.mark.parametrize("shape", [(64, 32), (300, 400)])
def test_jit_and_purity(spec, shape):
    init = initializer(spec)
    jitted = jax.jit(init, static_argnums=(1,))
    key = jax.random.key(0)
    # XLA may fuse the multiply-add under jit, so the last bit can differ; the draws are the same.
    np.testing.assert_allclose(np.asarray(jitted(key, shape)), np.asarray(init(key, shape)), rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.asarray(jitted(key, shape)), np.asarray(jitted(key, shape)))
    assert not np.array_equal(np.asarray(init(key, shape)), np.asarray(init(jax.random.key(1), shape)))


def test_linen_dense_and_embed():
    model = linen.Sequential(
        [linen.Dense(256, kernel_init=initializer(pi.he_uniform(a=5**0.5)), bias_init=initializer(pi.constant(0.5)))]
    )
    params = model.init(jax.random.key(0), jnp.ones((1, 784)))["params"]["layers_0"]
    kernel = np.asarray(params["kernel"], dtype=np.float64)
    plan = pi.resolve(pi.he_uniform(a=5**0.5), (784, 256), pi.IN_OUT)
    assert not failures(check(kernel, plan))
    assert np.all(np.asarray(params["bias"]) == 0.5)
    embed = linen.Embed(100, 16, embedding_init=initializer(pi.Normal(std=0.02)))
    table = embed.init(jax.random.key(1), jnp.zeros((1,), jnp.int32))["params"]["embedding"]
    assert table.shape == (100, 16)


def test_nnx_linear_and_conv():
    rngs = nnx.Rngs(0)
    linear = nnx.Linear(784, 256, kernel_init=initializer(pi.Orthogonal(gain=2.0)), rngs=rngs)
    plan = pi.resolve(pi.Orthogonal(gain=2.0), (784, 256), pi.IN_OUT)
    assert not failures(check(np.asarray(linear.kernel[...], dtype=np.float64), plan))
    conv = nnx.Conv(16, 32, (3, 3), kernel_init=initializer(pi.DeltaOrthogonal()), rngs=rngs)
    kernel = np.asarray(conv.kernel[...], dtype=np.float64)
    assert kernel.shape == (3, 3, 16, 32)
    assert np.abs(kernel[0]).sum() == 0 and np.abs(kernel[1, 1]).sum() > 0


def test_bad_dtype():
    with pytest.raises(pi.PolyinitError, match="int32"):
        initializer(pi.zeros())(jax.random.key(0), (2, 2), jnp.int32)
