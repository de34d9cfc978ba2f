"""Keras files name polyinit's initializer ``PolyinitInitializer`` (not Keras's own base-class name),
files saved under the old name ``Initializer`` still load, and a load without the import says
which class is missing instead of building Keras's base class."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

pytest.importorskip("keras")

SAVE = textwrap.dedent("""
    import sys, numpy as np, keras, polyinit
    from polyinit.backends.keras import PolyinitInitializer
    model = keras.Sequential([keras.Input((6,)),
        keras.layers.Dense(4, kernel_initializer=PolyinitInitializer(polyinit.he_normal(), seed=1))])
    model.save(sys.argv[1])
    np.save(sys.argv[2], model.layers[0].kernel.numpy())
""")
LOAD = textwrap.dedent("""
    import sys, numpy as np, keras
    if sys.argv[3] == "import":
        import polyinit.backends.keras
    model = keras.models.load_model(sys.argv[1])
    assert np.array_equal(model.layers[0].kernel.numpy(), np.load(sys.argv[2]))
    init = model.layers[0].kernel_initializer
    print(type(init).__name__, init.spec.kind)
""")
ENV = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


def _saved(tmp_path):
    path, weights = str(tmp_path / "model.keras"), str(tmp_path / "kernel.npy")
    subprocess.run([sys.executable, "-c", SAVE, path, weights], check=True, env=ENV)
    return path, weights


def _rewrite_config(path: str, old: str, new: str) -> None:
    """Rewrite the initializer's names inside a .keras archive (the config form an older polyinit wrote)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    text = (
        json.dumps(config)
        .replace(f'"class_name": "{old}"', f'"class_name": "{new}"')
        .replace(f'"registered_name": "polyinit>{old}"', f'"registered_name": "polyinit>{new}"')
    )
    assert text != json.dumps(config), "the saved config holds no polyinit initializer to rewrite"
    members["config.json"] = text.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _load(path, weights, how):
    return subprocess.run([sys.executable, "-c", LOAD, path, weights, how], env=ENV, capture_output=True, text=True)


def test_saved_under_the_new_name(tmp_path):
    path, weights = _saved(tmp_path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert '"registered_name": "polyinit>PolyinitInitializer"' in json.dumps(config)
    out = _load(path, weights, "import")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PolyinitInitializer", "variance_scaling"]


def test_file_saved_with_the_old_class_name_loads(tmp_path):
    path, weights = _saved(tmp_path)
    _rewrite_config(path, "PolyinitInitializer", "Initializer")
    out = _load(path, weights, "import")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PolyinitInitializer", "variance_scaling"]


def test_load_without_the_import_names_the_missing_class(tmp_path):
    path, weights = _saved(tmp_path)
    out = _load(path, weights, "no-import")
    assert out.returncode != 0
    assert "PolyinitInitializer" in out.stderr and "takes no arguments" not in out.stderr
