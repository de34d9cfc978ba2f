"""`polyinit conformance MODULE:ATTR` and the pytest fixture, on specs a new user writes."""

import importlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from polyinit.conformance.selection import backends_for_run

FOUND, _ = backends_for_run()

USER_MODULE = textwrap.dedent("""
    import numpy as np
    import polyinit as pi

    w = pi.Uniform(low=-10.0, high=10.0)
    rules = {"threshold": w * (abs(w) >= 5), "he": pi.he_normal(truncated=True)}


    def my_init(shape, seed):
        fan_in, fan_out = shape[1] * int(np.prod(shape[2:])), shape[0] * int(np.prod(shape[2:]))
        bound = np.sqrt(6 / (fan_in + fan_out))
        return np.random.default_rng(seed).uniform(-bound, bound, shape)


    mine = {"glorot": (pi.glorot_uniform(), my_init)}
    broken = {"glorot_as_normal": (pi.glorot_normal(), my_init)}
    not_a_spec = [1, 2]


    def raising_init(shape, seed):
        raise RuntimeError("my initializer is broken")


    def transposed_init(shape, seed):
        return my_init(shape, seed).T


    raises = {"glorot": (pi.glorot_uniform(), raising_init)}
    wrong_shape = {"glorot": (pi.glorot_uniform(), transposed_init)}
""")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's polyinit, installed or not.
ENV = dict(
    os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
)


def cli(tmp_path, *args):
    (tmp_path / "userspecs.py").write_text(USER_MODULE)
    env = ENV
    return subprocess.run(
        [sys.executable, "-m", "polyinit", "conformance", *args], cwd=tmp_path, capture_output=True, text=True, env=env
    )


def test_user_specs_pass_with_a_table_and_json(tmp_path):
    backends = ["numpy"] + (["torch"] if "torch" in FOUND else [])
    out = cli(tmp_path, "userspecs:rules", "--backends", ",".join(backends), "--json", "report.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "threshold" in out.stdout and out.stdout.strip().endswith("0 failed")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["backend"] for r in report} == set(backends) and all(r["passed"] for r in report)


def test_users_own_initializer_described_by_its_spec(tmp_path):
    out = cli(tmp_path, "userspecs:mine", "--backends", "numpy")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "yours" in out.stdout


def test_broken_spec_exits_nonzero_naming_the_statistic(tmp_path):
    out = cli(tmp_path, "userspecs:broken", "--backends", "numpy")
    assert out.returncode == 1
    failure = next(line for line in out.stdout.splitlines() if "FAIL" in line and "expected" in line)
    # statistic, expected against observed, tolerance, backend, shape and dtype are all named
    assert "yours glorot_as_normal" in failure and "float32" in failure and "tolerance" in failure
    assert any(stat in failure for stat in ("excess kurtosis", "KS p-value", "support"))


@pytest.mark.parametrize(
    "target,message",
    [
        ("userspecs:missing", "no attribute 'missing'"),
        ("userspecs:not_a_spec", "not polyinit specs"),
        ("nomodule_xyz:rules", "cannot import"),
        ("userspecs", "MODULE:ATTR"),
    ],
)
def test_usage_errors(tmp_path, target, message):
    out = cli(tmp_path, target, "--backends", "numpy")
    assert out.returncode == 2 and message in out.stderr


def test_a_user_function_that_raises_exits_2_naming_it(tmp_path):
    out = cli(tmp_path, "userspecs:raises", "--backends", "numpy")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "raising_init" in out.stderr and "my initializer is broken" in out.stderr


def test_the_shape_a_user_function_returns_is_checked_first(tmp_path):
    out = cli(tmp_path, "userspecs:wrong_shape", "--backends", "numpy")
    assert out.returncode == 1, out.stdout + out.stderr
    failures = [line for line in out.stdout.splitlines() if "FAIL" in line and "expected" in line]
    # Every failing case fails on its shape alone (a square shape would pass: none is standard).
    assert failures and all("shape" in line and "asked for" in line for line in failures), failures


def test_load_specs_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    from polyinit.conformance.cli import load_specs

    (tmp_path / "userspecs_path.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    for _ in range(3):
        assert set(load_specs("userspecs_path:rules")) == {"threshold", "he"}
    assert sys.path == before


def test_the_entry_point_names_the_plugin():
    # pyproject's pytest11 entry point registers the fixture when polyinit is installed.
    tomllib = pytest.importorskip("tomllib")
    root = pathlib.Path(__file__).resolve().parents[1]
    value = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]["polyinit"]
    assert value == "polyinit.conformance.pytest_plugin"
    assert callable(getattr(importlib.import_module(value), "polyinit_conformance", None))


def run_pytest(tmp_path, source):
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(source))
    env = ENV
    # The plugin by module name, and no installed entry point (which may be another checkout's):
    # this works from a plain checkout, with or without polyinit pip-installed.
    plugin = ["-p", "no:polyinit", "-p", "polyinit.conformance.pytest_plugin"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(tmp_path / "test_mine.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )


def test_pytest_fixture(tmp_path):
    out = run_pytest(
        tmp_path,
        """
        import numpy as np
        import polyinit as pi

        def test_ok(polyinit_conformance):
            polyinit_conformance(pi.glorot_uniform(), backends=["numpy"])

        def glorot(shape, seed):  # the user's own, for OUT_IN weights
            fans = shape[1] * int(np.prod(shape[2:])) + shape[0] * int(np.prod(shape[2:]))
            return np.random.default_rng(seed).uniform(-1, 1, shape) * np.sqrt(6 / fans)

        def test_own_initializer(polyinit_conformance):
            results = polyinit_conformance((pi.glorot_uniform(), glorot))
            assert {r.backend for r in results} == {"yours"}

        def test_own_initializer_in_out(polyinit_conformance):
            polyinit_conformance((pi.glorot_uniform(), lambda shape, seed: glorot(shape[::-1], seed).T, pi.IN_OUT))

        def test_own_initializer_described_wrongly_fails(polyinit_conformance):
            try:
                polyinit_conformance((pi.glorot_normal(), glorot))
            except AssertionError as error:
                assert "yours" in str(error) and "tolerance" in str(error)
            else:
                raise RuntimeError("a uniform initializer passed as normal")

        def test_own_initializer_of_the_wrong_shape_fails_on_shape(polyinit_conformance):
            try:
                polyinit_conformance((pi.glorot_uniform(), lambda shape, seed: glorot(shape, seed).ravel()))
            except AssertionError as error:
                assert "shape" in str(error) and "asked for" in str(error)
            else:
                raise RuntimeError("a flat array passed as a weight")
    """,
    )
    assert "5 passed" in out.stdout, out.stdout + out.stderr
