"""Portable draws: the Threefry cipher against published known answers and JAX's own, and the
same float32 bits in every backend (numpy, torch, jax, keras on each of its backends, mxnet)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends.numpy import draw_portable as numpy_portable
from polyinit.portable import evaluate, floats, stream_key, threefry2x32, threefry2x32_scalar
from polyinit.portable.xp_numpy import Ops as NumpyOps

# Random123 kat_vectors, "threefry2x32 20": (counter, key) -> output.
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
]


def _ops(name):
    if name == "numpy":
        return NumpyOps()
    if name == "torch":
        from polyinit.portable.xp_torch import Ops
    elif name == "jax":
        from polyinit.portable.xp_jax import Ops
    else:
        from polyinit.portable.xp_tensorflow import Ops
    return Ops()


def _words(ops, values):
    """Python uint32 values in ``ops``' word representation (via its own iota and adds)."""
    return [ops.add(ops.iota(0, 1), v) for v in values]


def _to_uint32(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x).astype(np.int64).astype(np.uint32)


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_known_answers_scalar(counter, key, expected):
    assert threefry2x32_scalar(key, counter) == expected


FRAMEWORKS = ["numpy", "torch", "jax", "tensorflow"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_known_answers_in_each_framework(framework):
    ops = _ops(framework)
    for counter, key, expected in KAT:
        x0, x1 = _words(ops, counter)
        y0, y1 = threefry2x32(ops, key, x0, x1)
        assert (int(_to_uint32(y0)[0]), int(_to_uint32(y1)[0])) == expected, framework


def test_matches_jax_threefry_on_random_counters():
    from jax.extend.random import threefry_2x32

    rng = np.random.default_rng(12)
    for _ in range(3):
        key = tuple(int(k) for k in rng.integers(0, 2**32, 2))
        x0, x1 = (rng.integers(0, 2**32, 4097).astype(np.uint32) for _ in range(2))
        theirs = np.asarray(threefry_2x32(np.array(key, np.uint32), np.concatenate([x0, x1])))
        ours = threefry2x32(NumpyOps(), key, x0.copy(), x1.copy())
        assert np.array_equal(np.concatenate(ours), theirs)


# --- the same bits everywhere ----------------------------------------------------------------

SIZE = (1000, 1000)  # 10^6 values per distribution
DISTRIBUTIONS = {
    "uniform": (pi.Uniform(low=-0.3, high=0.7), SIZE),
    "normal": (pi.Normal(mean=0.1, std=2.0), SIZE),
    "truncated_std": (pi.TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds="std"), SIZE),
    "truncated_torch": (pi.TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute"), SIZE),
    "truncated_one_sided": (pi.TruncatedNormal(std=1.0, low=0.5, high=4.0, bounds="std"), (250, 400)),
    "glorot_uniform": (pi.glorot_uniform(), (256, 784)),
    "he_normal_truncated": (pi.he_normal(truncated=True), (256, 784)),
    "expression": (pi.clip(2.0 * pi.Normal(std=1.0) + pi.Uniform(low=0.0, high=1.0), -2.5, 2.5), (300, 200)),
    "lstm_bias": (pi.lstm_bias(), (4096,)),
    "blocks": (pi.Blocks(parts=(pi.Normal(std=1.0), pi.Uniform(low=-1.0, high=1.0)), axis=0), (64, 300)),
    "sparse": (pi.Sparse(sparsity=0.3, std=0.5), (200, 300)),
    "constant": (pi.constant(0.25), (7, 3)),
}


def _plans():
    return {name: pi.resolve(spec, shape, pi.OUT_IN) for name, (spec, shape) in DISTRIBUTIONS.items()}


def _reference():
    return {name: numpy_portable(plan, 2024, f"model.{name}") for name, plan in _plans().items()}


@pytest.fixture(scope="module")
def reference():
    return _reference()


def _same_bits(a, b) -> int:
    """Number of differing float32 values."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    return int(np.sum(a.view(np.uint32) != b.view(np.uint32)))


def test_every_backend_draws_the_same_bits(backend, reference):
    for name, plan in _plans().items():
        values = backend.to_numpy(backend.draw_portable(plan, 2024, f"model.{name}"))
        assert _same_bits(values, reference[name]) == 0, (backend.NAME, name)


KERAS_PROBE = textwrap.dedent("""
    import sys, keras, numpy as np
    sys.path.insert(0, {tests!r})
    from test_portable import _plans
    from polyinit.backends.keras import draw_portable, to_numpy
    assert keras.backend.backend() == {backend!r}
    np.savez(sys.argv[1], **{{name: to_numpy(draw_portable(plan, 2024, "model." + name)).astype(np.float32)
                            for name, plan in _plans().items()}})
""")


@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_every_keras_backend_draws_the_same_bits(keras_backend, reference, tmp_path):
    import keras

    if keras.backend.backend() == keras_backend:
        pytest.skip("the current Keras backend is covered by test_every_backend_draws_the_same_bits")
    out = str(tmp_path / "draws.npz")
    probe = KERAS_PROBE.format(tests=os.path.dirname(__file__), backend=keras_backend)
    env = dict(os.environ, KERAS_BACKEND=keras_backend, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", probe, out], check=True, env=env, capture_output=True)
    draws = np.load(out)
    for name in DISTRIBUTIONS:
        assert _same_bits(draws[name], reference[name]) == 0, (keras_backend, name)


def test_jax_under_jit_and_eager_numpy_agree(reference):
    """XLA fuses a * b + c into an FMA; the guard in fmul keeps the jitted draw bit-identical."""
    import jax

    from polyinit.backends.jax import draw_portable

    plan = _plans()["normal"]
    jitted = jax.jit(lambda: draw_portable(plan, 2024, "model.normal"))()
    assert _same_bits(np.asarray(jitted), reference["normal"]) == 0


def test_tensorflow_under_xla_agrees(reference):
    import tensorflow as tf

    from polyinit.portable.xp_tensorflow import Ops

    plan = _plans()["he_normal_truncated"]
    compiled = tf.function(
        lambda: evaluate.draw(Ops(), plan, 2024, "model.he_normal_truncated"), jit_compile=True, autograph=False
    )()
    assert _same_bits(compiled.numpy(), reference["he_normal_truncated"]) == 0


# --- element i depends on (seed, key, leaf, i) only ------------------------------------------


def test_values_do_not_depend_on_chunking_or_size(monkeypatch):
    plan = pi.resolve(pi.Normal(std=1.0), (3001,))
    whole = numpy_portable(plan, 7, "w")
    monkeypatch.setattr(evaluate, "CHUNK", 999)  # odd chunks start on odd indices
    assert _same_bits(numpy_portable(plan, 7, "w"), whole) == 0
    prefix = numpy_portable(pi.resolve(pi.Normal(std=1.0), (1000,)), 7, "w")
    assert _same_bits(prefix, whole[:1000]) == 0  # element i is the same whatever the size


def test_values_do_not_depend_on_order_and_keys_separate_streams():
    plan = pi.resolve(pi.Uniform(low=0.0, high=1.0), (64, 64))
    a1, b1 = numpy_portable(plan, 1, "a"), numpy_portable(plan, 1, "b")
    b2, a2 = numpy_portable(plan, 1, "b"), numpy_portable(plan, 1, "a")
    assert _same_bits(a1, a2) == 0 and _same_bits(b1, b2) == 0
    assert _same_bits(a1, b1) > 4000 and _same_bits(a1, numpy_portable(plan, 2, "a")) > 4000
    assert stream_key(1, 5) != stream_key(1, "5")  # int and str keys are distinct streams


def test_torch_fills_a_non_contiguous_view_in_place():
    import torch

    from polyinit.backends.torch import draw_portable

    plan = pi.resolve(pi.Normal(std=1.0), (40, 30))
    base = torch.zeros(30, 40)
    out = draw_portable(plan, 3, "w", out=base.T)
    assert out.data_ptr() == base.data_ptr()
    assert _same_bits(base.T.numpy(), numpy_portable(plan, 3, "w")) == 0


def test_other_dtypes_are_casts_of_the_float32_values(backend):
    plan32 = pi.resolve(pi.Normal(std=1.0), (128, 64))
    for dtype in ("float16", "float64"):
        if dtype not in backend.DTYPES:
            continue
        values = backend.to_numpy(backend.draw_portable(pi.resolve(pi.Normal(std=1.0), (128, 64), dtype=dtype), 5, "w"))
        expected = numpy_portable(plan32, 5, "w").astype(dtype).astype(np.float64)
        assert np.array_equal(values, expected), (backend.NAME, dtype)


# --- what portable mode refuses --------------------------------------------------------------


@pytest.mark.parametrize("spec,shape", [(pi.Orthogonal(), (8, 8)), (pi.DeltaOrthogonal(), (8, 8, 3, 3))])
def test_orthogonal_is_refused(backend, spec, shape):
    with pytest.raises(pi.NotExpressibleError, match="QR"):
        backend.draw_portable(pi.resolve(spec, shape, pi.OUT_IN), 0, "w")


@pytest.mark.parametrize("seed,key", [(-1, "w"), (2**64, "w"), (1.5, "w"), (True, "w"), (0, 1.5), (0, None)])
def test_bad_seed_or_key(seed, key):
    with pytest.raises(pi.PolyinitError, match="seed|key"):
        numpy_portable(pi.resolve(pi.zeros(), (2,)), seed, key)


# --- accuracy of the float conversions -------------------------------------------------------


def _quantile_grid():
    tails = np.float32(2.0) ** -np.arange(1, 34, 0.25, dtype=np.float32)
    body = np.linspace(1e-4, 0.5, 200001, dtype=np.float32)
    return np.concatenate([tails, body]).astype(np.float32)


def test_inverse_normal_cdf_accuracy():
    from scipy.special import ndtri

    q = _quantile_grid()
    exact = ndtri(q.astype(np.float64))
    ours = floats.ndtri_lower(NumpyOps(), q).astype(np.float64)
    assert np.max(np.abs(ours - exact)) < 2e-6
    assert np.max(np.abs(ours - exact) / np.maximum(np.abs(exact), 1e-3)) < 1e-6


def test_logarithm_and_square_root_accuracy():
    x = np.float32(2.0) ** np.linspace(-33, -1, 100001, dtype=np.float32)
    assert np.max(np.abs(floats.log(NumpyOps(), x) - np.log(x.astype(np.float64)))) < 4e-6
    y = np.linspace(1.0, 128.0, 100001, dtype=np.float32)
    assert np.max(np.abs(floats.sqrt(NumpyOps(), y) / np.sqrt(y.astype(np.float64)) - 1)) < 2.5e-7
