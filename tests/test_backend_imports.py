"""Importing a backend whose framework is missing names the extra to install; ``available_backends``
names the numpy MXNet-protocol path for what it is; JAX under x64 defaults to float64 like
``jax.nn.initializers``. Each case runs in a fresh interpreter (framework imports are process-wide)."""

import os
import subprocess
import sys
import textwrap

import pytest

# A finder that makes one top-level module (and its submodules) unimportable, as if not installed.
BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def __init__(self, name): self.name = name
        def find_spec(self, fullname, path=None, target=None):
            if fullname == self.name or fullname.startswith(self.name + "."):
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
    sys.meta_path.insert(0, _Block(sys.argv[1]))
""")


def _run(code: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )


@pytest.mark.parametrize(
    "backend,framework,extra",
    [("torch", "torch", "polyinit[torch]"), ("jax", "jax", "polyinit[jax]"), ("keras", "keras", "polyinit[keras-jax]")],
)
def test_missing_framework_names_the_extra(backend, framework, extra):
    out = _run(
        f"""
        from polyinit.errors import BackendUnavailableError
        try:
            import polyinit.backends.{backend}
        except BackendUnavailableError as error:
            print("refused:", error)
    """,
        framework,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("refused:") and extra in out.stdout and framework in out.stdout


def test_available_backends_without_mxnet_names_the_protocol_path():
    out = _run(
        """
        import polyinit
        names = polyinit.available_backends()
        print(names)
        assert "mxnet-protocol" in names and "mxnet" not in names, names
        assert polyinit.get_backend("mxnet").NAME == "mxnet"   # the old name keeps working
        assert polyinit.get_backend("mxnet-protocol") is polyinit.get_backend("mxnet")
    """,
        "mxnet",
    )
    assert out.returncode == 0, out.stderr[-2000:]


def test_jax_x64_default_dtype_is_float64():
    pytest.importorskip("jax")
    out = _run(
        """
        import jax, jax.numpy as jnp, polyinit
        from polyinit.backends.jax import initializer
        key = jax.random.key(0)
        ours = initializer(polyinit.lecun_normal())(key, (8, 4))
        theirs = jax.nn.initializers.lecun_normal()(key, (8, 4))
        print(ours.dtype, theirs.dtype, initializer(polyinit.zeros())(key, (3,), jnp.float32).dtype)
    """,
        "nothing-blocked",
        env={"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["float64", "float64", "float32"]
