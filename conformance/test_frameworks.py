"""The frameworks themselves: each framework's own initializer against the same oracle as polyinit's
twin spec (the plan of that spec, never another sample). Known upstream deviations are strict xfails."""

import math

import numpy as np
import pytest

torch = __import__("torch")
jax = __import__("jax")
keras = __import__("keras")

import polyinit as pi  # noqa: E402
from polyinit import native  # noqa: E402
from polyinit.conformance import check, failures  # noqa: E402

nn_init = torch.nn.init
jinit = jax.nn.initializers
DENSE_T, CONV_T = (256, 196), (64, 32, 3, 3)  # torch layout
DENSE_K, CONV_K = (196, 256), (3, 3, 32, 64)  # Keras/JAX layout


def torch_draws(fn, shape, count=4):
    out = []
    for seed in range(count):
        t = torch.empty(shape)
        fn(t, torch.Generator().manual_seed(seed))
        out.append(t.double().numpy())
    return out


TORCH = [
    ("uniform_", lambda t, g: nn_init.uniform_(t, -0.3, 0.7, generator=g), native.torch_uniform(-0.3, 0.7), DENSE_T),
    ("normal_", lambda t, g: nn_init.normal_(t, 0.1, 0.2, generator=g), native.torch_normal(0.1, 0.2), DENSE_T),
    (
        "trunc_normal_",
        lambda t, g: nn_init.trunc_normal_(t, 0.0, 1.0, -1.0, 2.0, generator=g),
        native.torch_trunc_normal(0.0, 1.0, -1.0, 2.0),
        DENSE_T,
    ),
    ("constant_", lambda t, g: nn_init.constant_(t, 0.3), pi.constant(0.3), DENSE_T),
    ("eye_", lambda t, g: nn_init.eye_(t), pi.Identity(), DENSE_T),
    ("dirac_", lambda t, g: nn_init.dirac_(t, groups=2), pi.Dirac(groups=2), CONV_T),
    (
        "xavier_uniform_",
        lambda t, g: nn_init.xavier_uniform_(t, gain=2.0, generator=g),
        native.torch_xavier_uniform(2.0),
        CONV_T,
    ),
    ("xavier_normal_", lambda t, g: nn_init.xavier_normal_(t, generator=g), native.torch_xavier_normal(), CONV_T),
    (
        "kaiming_uniform_(a=sqrt5)",
        lambda t, g: nn_init.kaiming_uniform_(t, a=math.sqrt(5), generator=g),
        native.torch_kaiming_uniform(a=math.sqrt(5)),
        DENSE_T,
    ),
    (
        "kaiming_normal_(fan_out,relu)",
        lambda t, g: nn_init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
        native.torch_kaiming_normal(mode="fan_out", nonlinearity="relu"),
        CONV_T,
    ),
    ("orthogonal_", lambda t, g: nn_init.orthogonal_(t, gain=1.5, generator=g), native.torch_orthogonal(1.5), CONV_T),
]


@pytest.mark.parametrize("name,fn,spec,shape", TORCH, ids=[t[0] for t in TORCH])
def test_torch_twins(name, fn, spec, shape):
    plan = pi.resolve(spec, shape, pi.OUT_IN)
    native_failures = failures(check(torch_draws(fn, shape), plan))
    assert not native_failures, [str(f) for f in native_failures]
    ours = torch_draws(pi.get_backend("torch").initializer(spec), shape)
    assert not failures(check(ours, plan))


def test_torch_sparse_twin():
    # sparse_ draws its zero positions with an unseeded randperm; the statistics still hold.
    plan = pi.resolve(pi.Sparse(sparsity=0.3, std=0.02), DENSE_T, pi.OUT_IN)
    torch.manual_seed(0)
    assert not failures(check(torch_draws(lambda t, g: nn_init.sparse_(t, 0.3, 0.02, generator=g), DENSE_T), plan))


def test_torch_trunc_normal_tiny_std_has_no_clamped_outliers():
    # torch <= 2.11 drew trunc_normal_ by erfinv + clamp and put rare float32 values on the
    # absolute bounds at tiny std (pytorch/pytorch#155588). The installed 2.13 draws by rejection
    # (normal_ + redraw, or uniform + accept); this pins that the fix holds.
    spec = native.torch_trunc_normal(0.0, 0.001, -2.0, 2.0)
    plan = pi.resolve(spec, (1024, 2048), pi.OUT_IN)
    draws = torch_draws(lambda t, g: nn_init.trunc_normal_(t, 0.0, 0.001, -2.0, 2.0, generator=g), (1024, 2048), 2)
    assert not failures(check(draws, plan))


KERAS_TORCH_TRUNCATED = """
import os, numpy as np, keras, polyinit
from polyinit import native
from polyinit.conformance import check, failures
init = keras.initializers.TruncatedNormal(0.0, 1.0, seed=0)
plan = polyinit.resolve(native.keras_truncated_normal(0.0, 1.0), (1024, 2048))
draw = np.asarray(keras.ops.convert_to_numpy(init((1024, 2048))), dtype=np.float64)
print([f.name for f in failures(check(draw, plan))])
"""


@pytest.mark.xfail(
    strict=True,
    reason="Keras's torch backend draws 4 normals and keeps the first inside +-2; "
    "when none is (p ~ 4.3e-6 per element) the value lies outside +-2 stddev "
    "(keras/src/backend/torch/random.py truncated_normal; keras-team/keras, no upstream fix)",
)
def test_keras_torch_backend_truncated_normal_leaks_outside_bounds():
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="torch")
    out = subprocess.run(
        [sys.executable, "-c", KERAS_TORCH_TRUNCATED], env=env, check=True, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def keras_draws(init, shape, count=4):
    return [
        np.asarray(
            keras.ops.convert_to_numpy(init.__class__.from_config({**init.get_config(), "seed": s})(shape)),
            dtype=np.float64,
        )
        for s in range(count)
    ]


KI = keras.initializers
KERAS = [
    ("RandomUniform", KI.RandomUniform(-0.2, 0.1), native.keras_random_uniform(-0.2, 0.1), DENSE_K),
    ("RandomNormal", KI.RandomNormal(0.1, 0.3), native.keras_random_normal(0.1, 0.3), DENSE_K),
    ("TruncatedNormal", KI.TruncatedNormal(0.0, 0.3), native.keras_truncated_normal(0.0, 0.3), DENSE_K),
    ("GlorotUniform", KI.GlorotUniform(), pi.glorot_uniform(), CONV_K),
    ("GlorotNormal", KI.GlorotNormal(), native.keras_glorot_normal(), CONV_K),
    ("HeNormal", KI.HeNormal(), native.keras_he_normal(), CONV_K),
    ("HeUniform", KI.HeUniform(), native.keras_he_uniform(), DENSE_K),
    ("LecunNormal", KI.LecunNormal(), native.keras_lecun_normal(), DENSE_K),
    ("LecunUniform", KI.LecunUniform(), pi.lecun_uniform(), DENSE_K),
    (
        "VarianceScaling(normal)",
        KI.VarianceScaling(2.0, "fan_out", "normal"),
        native.keras_variance_scaling(2.0, "fan_out", "normal"),
        CONV_K,
    ),
    (
        "VarianceScaling(untruncated)",
        KI.VarianceScaling(0.5, "fan_avg", "untruncated_normal"),
        native.keras_variance_scaling(0.5, "fan_avg", "untruncated_normal"),
        CONV_K,
    ),
    ("Orthogonal", KI.Orthogonal(gain=2.0), native.keras_orthogonal(2.0), CONV_K),
]


@pytest.mark.parametrize("name,init,spec,shape", KERAS, ids=[k[0] for k in KERAS])
def test_keras_twins(name, init, spec, shape):
    plan = pi.resolve(spec, shape, pi.IN_OUT)
    native_failures = failures(check(keras_draws(init, shape), plan))
    assert not native_failures, [str(f) for f in native_failures]
    ours = keras_draws(pi.get_backend("keras").Initializer(spec, seed=0), shape)
    assert not failures(check(ours, plan))


def test_keras_deterministic_twins():
    assert np.array_equal(keras.ops.convert_to_numpy(KI.Identity(gain=2.0)((4, 6))), 2.0 * np.eye(4, 6))
    assert np.all(keras.ops.convert_to_numpy(KI.Constant(0.3)((3,))) == np.float32(0.3))


def jax_draws(init, shape, count=4):
    return [np.asarray(init(jax.random.key(s), shape), dtype=np.float64) for s in range(count)]


JAX = [
    ("uniform", jinit.uniform(0.5), native.jax_uniform(0.5), DENSE_K),
    ("normal", jinit.normal(0.2), native.jax_normal(0.2), DENSE_K),
    (
        "truncated_normal",
        jinit.truncated_normal(0.2, lower=-1.0, upper=3.0),
        native.jax_truncated_normal(0.2, -1.0, 3.0),
        DENSE_K,
    ),
    (
        "variance_scaling(fan_geo_avg)",
        jinit.variance_scaling(2.0, "fan_geo_avg", "normal"),
        native.jax_variance_scaling(2.0, "fan_geo_avg", "normal"),
        CONV_K,
    ),
    ("glorot_uniform", jinit.glorot_uniform(), pi.glorot_uniform(), CONV_K),
    ("glorot_normal", jinit.glorot_normal(), pi.glorot_normal(truncated=True), CONV_K),
    ("he_uniform", jinit.he_uniform(), pi.he_uniform(), DENSE_K),
    ("he_normal", jinit.he_normal(), pi.he_normal(truncated=True), DENSE_K),
    ("lecun_uniform", jinit.lecun_uniform(), pi.lecun_uniform(), DENSE_K),
    ("lecun_normal", jinit.lecun_normal(), pi.lecun_normal(truncated=True), CONV_K),
    ("orthogonal", jinit.orthogonal(1.5), native.jax_orthogonal(1.5), CONV_K),
    ("delta_orthogonal", jinit.delta_orthogonal(1.5), pi.DeltaOrthogonal(gain=1.5), CONV_K),
]


@pytest.mark.parametrize("name,init,spec,shape", JAX, ids=[j[0] for j in JAX])
def test_jax_twins(name, init, spec, shape):
    plan = pi.resolve(spec, shape, pi.IN_OUT)
    native_failures = failures(check(jax_draws(init, shape), plan))
    assert not native_failures, [str(f) for f in native_failures]
    assert not failures(check(jax_draws(pi.get_backend("jax").initializer(spec), shape), plan))


@pytest.mark.parametrize("framework", ["torch", "keras", "flax"])
def test_presets_against_the_frameworks_own_layers(framework):
    # Native presets: the framework's own variance scaling on its real layer's weight, drawn
    # against polyinit's plan under the preset; semantic presets: fans equal the data-flow fans.
    from polyinit.conformance.presets import preset_checks

    checks = preset_checks(framework)
    kinds = {c.name.split(" ")[1] for c in checks}
    assert kinds == {"dense", "conv", "conv_transpose", "depthwise_conv", "embedding"}
    bad = [str(c) for c in checks if not c.passed]
    assert not bad, bad
