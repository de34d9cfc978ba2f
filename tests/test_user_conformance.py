"""`polyinit conformance MODULE:ATTR` and the pytest fixture, on specs a new user writes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

USER_MODULE = textwrap.dedent('''
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
''')


def cli(tmp_path, *args):
    (tmp_path / "userspecs.py").write_text(USER_MODULE)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "polyinit", "conformance", *args], cwd=tmp_path,
                          capture_output=True, text=True, env=env)


def test_user_specs_pass_with_a_table_and_json(tmp_path):
    out = cli(tmp_path, "userspecs:rules", "--backends", "numpy,torch", "--json", "report.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "threshold" in out.stdout and out.stdout.strip().endswith("0 failed")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["backend"] for r in report} == {"numpy", "torch"} and all(r["passed"] for r in report)


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


@pytest.mark.parametrize("target,message", [("userspecs:missing", "no attribute 'missing'"),
                                            ("userspecs:not_a_spec", "not polyinit specs"),
                                            ("nomodule_xyz:rules", "cannot import"), ("userspecs", "MODULE:ATTR")])
def test_usage_errors(tmp_path, target, message):
    out = cli(tmp_path, target, "--backends", "numpy")
    assert out.returncode == 2 and message in out.stderr


def test_pytest_fixture(tmp_path):
    (tmp_path / "test_mine.py").write_text(textwrap.dedent('''
        import polyinit as pi

        def test_ok(polyinit_conformance):
            polyinit_conformance(pi.glorot_uniform(), backends=["numpy"])

        def test_fails(polyinit_conformance):
            bad = {"yours": __import__("types").SimpleNamespace(
                DTYPES=("float32",), to_numpy=lambda a: a,
                sample_plan=lambda plan, seed: __import__("numpy").random.default_rng(seed).normal(size=plan.shape))}
            from polyinit.conformance.runner import run
            results = run({"glorot": pi.glorot_uniform()}, ["yours"], modules=bad)
            assert not all(r.passed for r in results)
    '''))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_mine.py")],
                         cwd=tmp_path, capture_output=True, text=True)
    assert "2 passed" in out.stdout, out.stdout + out.stderr
