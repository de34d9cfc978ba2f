"""``PolyinitInitializer(spec)`` with seed=None follows ``keras.utils.set_random_seed`` on the
TensorFlow, JAX and torch Keras backends (each in its own process, KERAS_BACKEND=...), through
Keras's global seed generator and never Python's ``random``; and ``import polyinit`` registers
the initializer where Keras is imported already (issue 25, point 4)."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("keras")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = textwrap.dedent("""
    import json, random, keras, numpy as np, polyinit as pi
    from polyinit.backends.keras import PolyinitInitializer
    assert keras.backend.backend() == "{backend}"

    def draw():
        return keras.ops.convert_to_numpy(PolyinitInitializer(pi.he_normal())((5, 4))).tolist()

    def model():
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, kernel_initializer=PolyinitInitializer(
            pi.glorot_uniform()), bias_initializer=PolyinitInitializer(pi.Normal(std=1.0)))])
        return [keras.ops.convert_to_numpy(w).tolist() for w in m.weights]

    keras.utils.set_random_seed(3)
    python = random.getstate()
    first, second, weights = draw(), draw(), model()
    python_untouched = random.getstate() == python
    keras.utils.set_random_seed(3)
    again, again_second, weights_again = draw(), draw(), model()
    keras.utils.set_random_seed(4)
    other = draw()
    print(json.dumps(dict(same=[first == again, second == again_second, weights == weights_again],
                          differ=[first != second, first != other], python_untouched=python_untouched,
                          values=first)))
""")


def _env(backend):
    return dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    )


@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_set_random_seed_makes_unseeded_initializers_reproducible(keras_backend):
    import json

    pytest.importorskip({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[keras_backend])
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(backend=keras_backend)],
        env=_env(keras_backend),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["same"] == [True, True, True], found  # the same program after the same seed
    assert found["differ"] == [True, True], found  # a second initializer, another seed: new values
    assert found["python_untouched"]


def test_unseeded_advances_only_keras_own_generator():
    import random

    from test_global_rng import _seed_everything, snapshot

    import polyinit as pi
    from polyinit.backends.keras import PolyinitInitializer

    _seed_everything()
    PolyinitInitializer(pi.zeros())  # Keras's global generator exists from here on
    before = snapshot()
    PolyinitInitializer(pi.he_normal())((3, 2))
    after = snapshot()
    assert [name for name in before if before[name] != after.get(name)] == ["keras"]
    assert before["python"] == random.getstate()


LOAD_AFTER_IMPORT = textwrap.dedent("""
    import sys, numpy as np, keras
    import polyinit  # keras was imported first: this registers PolyinitInitializer
    model = keras.models.load_model(sys.argv[1])
    assert np.array_equal(keras.ops.convert_to_numpy(model.layers[0].kernel), np.load(sys.argv[2]))
    print(type(model.layers[0].kernel_initializer).__name__)
""")


def test_load_model_right_after_import_polyinit(tmp_path):
    """The saved file names polyinit>PolyinitInitializer; a load without any polyinit import
    fails (tests/test_keras_saving.py), after ``import keras; import polyinit`` it works."""
    pytest.importorskip("tensorflow")
    from test_keras_saving import _saved

    path, weights = _saved(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AFTER_IMPORT, path, weights],
        env=_env("tensorflow"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "PolyinitInitializer"


def test_import_polyinit_without_keras_imports_no_keras():
    script = (
        "import sys, polyinit; print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=_env("tensorflow"), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
