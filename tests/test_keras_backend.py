"""Keras specifics: seed semantics like Keras's own, config round trip, .keras save/reload in a
fresh process, and all three Keras backends."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = __import__("keras")

import polyinit as pi
from polyinit.backends.keras import Initializer, to_numpy


def values(init, shape=(16, 8)):
    return to_numpy(init(shape, "float32"))


def test_int_seed_same_values_every_call():
    init = Initializer(pi.glorot_uniform(), seed=3)
    assert np.array_equal(values(init), values(init))
    assert not np.array_equal(values(init), values(Initializer(pi.glorot_uniform(), seed=4)))


def test_seed_generator_advances():
    init = Initializer(pi.glorot_uniform(), seed=keras.random.SeedGenerator(3))
    assert not np.array_equal(values(init), values(init))


def test_unseeded_fixed_per_object_new_on_clone():
    init = Initializer(pi.Normal(std=1.0))
    assert np.array_equal(values(init), values(init))
    assert init.get_config()["seed"] is None
    assert not np.array_equal(values(init), values(init.clone()))


def test_config_round_trip():
    init = Initializer(pi.lstm_bias(), layout="out", seed=7)
    config = init.get_config()
    json.dumps(config)  # plain data
    again = Initializer.from_config(config)
    assert again.spec == init.spec and again.layout == init.layout and again.seed == 7
    serialized = keras.initializers.serialize(init)
    assert serialized["registered_name"] == "polyinit>PolyinitInitializer"
    assert keras.initializers.deserialize(serialized).spec == init.spec


def test_bad_seed():
    with pytest.raises(pi.PolyinitError, match="seed"):
        Initializer(pi.zeros(), seed="3")


SAVE = textwrap.dedent("""
    import sys, numpy as np, keras, polyinit
    from polyinit.backends.keras import Initializer
    model = keras.Sequential([keras.Input((20,)),
        keras.layers.Dense(8, kernel_initializer=Initializer(polyinit.he_normal(truncated=True), seed=1),
                           bias_initializer=Initializer(polyinit.constant(0.1)))])
    model.save(sys.argv[1])
    np.save(sys.argv[2], model.layers[0].kernel.numpy())
""")
LOAD = textwrap.dedent("""
    import sys, numpy as np, keras
    import polyinit.backends.keras  # registers polyinit>PolyinitInitializer; no custom_objects
    model = keras.models.load_model(sys.argv[1])
    assert np.array_equal(model.layers[0].kernel.numpy(), np.load(sys.argv[2]))
    init = model.layers[0].kernel_initializer
    assert type(init).__name__ == "PolyinitInitializer" and init.spec.kind == "variance_scaling"
    rebuilt = keras.layers.Dense.from_config(model.layers[0].get_config())
    rebuilt.build((None, 20))
    assert np.array_equal(rebuilt.kernel.numpy(), np.load(sys.argv[2]))  # int seed: same values
    print("ok")
""")


def test_saved_model_reloads_in_a_fresh_process(tmp_path):
    path, weights = str(tmp_path / "model.keras"), str(tmp_path / "kernel.npy")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", SAVE, path, weights], check=True, env=env)
    out = subprocess.run(
        [sys.executable, "-c", LOAD, path, weights], check=True, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip().endswith("ok")


BACKEND_PROBE = textwrap.dedent("""
    import keras, numpy as np, polyinit
    from polyinit.backends.keras import Initializer, to_numpy
    from polyinit.conformance import check, failures
    assert keras.backend.backend() == "{backend}"
    bad = []
    for spec in (polyinit.glorot_uniform(), polyinit.he_normal(truncated=True), polyinit.Orthogonal(),
                 polyinit.Sparse(sparsity=0.5), polyinit.DeltaOrthogonal()):
        shape = (3, 3, 32, 64) if spec.kind == "delta_orthogonal" else (512, 256)
        plan = polyinit.resolve(spec, shape, polyinit.IN_OUT)
        draws = [to_numpy(Initializer(spec, seed=s)(shape, "float32")) for s in range(2)]
        bad += [str(f) for f in failures(check(draws, plan))]
    layer = keras.layers.Dense(4, kernel_initializer=Initializer(polyinit.ones()))
    layer.build((None, 3))
    assert np.all(keras.ops.convert_to_numpy(layer.kernel) == 1)
    print(bad)
""")


@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_every_keras_backend(keras_backend):
    env = dict(os.environ, KERAS_BACKEND=keras_backend, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, "-c", BACKEND_PROBE.format(backend=keras_backend)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
