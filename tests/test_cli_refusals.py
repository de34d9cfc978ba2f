"""What `polyinit compare` and `polyinit conformance` refuse (issue 22): an unbounded --depth, a
negative --seed, a cache entry that is not a measurement (a miss with a warning, never a
traceback nor a printed "measurement"), and exceptions raised by the user's own code (wrapped,
naming the target). Closed form only (--no-measure, or a framework whose measurement is cached):
no framework is imported."""

from __future__ import annotations

import json
import re
import sys

import pytest

from polyinit import compare_cache
from polyinit.cli import main
from polyinit.compare import MAX_DEPTH, compare
from polyinit.compare_model import compare_model
from polyinit.conformance.cli import load_specs
from polyinit.errors import PolyinitError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYINIT_CACHE", str(tmp_path / "cache"))


def test_a_huge_depth_is_refused_with_the_bound(capsys):
    assert main(["compare", "--depth", "1000000000", "--no-measure"]) == 2
    assert f"depth must be at most {MAX_DEPTH} layers, received depth=1000000000" in capsys.readouterr().err
    with pytest.raises(PolyinitError, match=f"at most {MAX_DEPTH} layers, received depth={MAX_DEPTH + 1}"):
        compare(depth=MAX_DEPTH + 1, measure=False)


@pytest.mark.parametrize("seed", ["-1", "-7"])
def test_a_negative_seed_is_an_error(seed, capsys):
    assert main(["compare", "--seed", seed, "--depth", "2"]) == 2
    assert f"compare: seed must be >= 0, received seed={seed}" in capsys.readouterr().err
    assert main(["compare", "--model", "any:thing", "--seed", seed]) == 2
    assert f"compare --model: seed must be >= 0, received seed={seed}" in capsys.readouterr().err
    assert main(["conformance", "any:thing", "--seed", seed]) == 2
    assert f"conformance: seed must be >= 0, received seed={seed}" in capsys.readouterr().err


def _entry(framework: str, depth: int):
    """The cache file compare reads for a dense relu stack of ``depth`` layers in ``framework``."""
    version = compare_cache.installed_version(framework)
    if version is None:
        pytest.skip(f"{framework} is not installed: compare does not read its cache")
    sizes = dict(n_in=784, n_out=256, depth=depth, kernel=3, heads=4)
    key = compare_cache.key(framework, version, layer="dense", activation="relu", seed=0, **sizes)
    path = compare_cache.folder() / f"compare-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _never_measure(monkeypatch):
    """The test is about the cache being read: a miss measures, which is replaced by a marker."""
    from polyinit import measure

    calls = []

    def fake(framework, setup, seed):
        calls.append(framework)
        return measure.Measured([1.0] * setup.depth, [2.0] * setup.depth, [0.0], [0.0])

    monkeypatch.setattr(measure, "measure", fake)
    return calls


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{}", "no list 'linear'"),
        ("[" * 100_000 + "]" * 100_000, "not readable JSON (RecursionError)"),
        (json.dumps({"linear": [5.0], "activated": [5.0], "weight": [0.1], "bias": [0.0]}), "1 values for depth 3"),
        (json.dumps({"linear": [1, 2, "x"], "activated": [1, 2, 3], "weight": [], "bias": []}), "not numbers"),
        ("not json", "not readable JSON"),
    ],
)
def test_a_bad_cache_entry_is_a_miss_with_a_warning(text, problem, monkeypatch):
    path = _entry("torch", 3)
    path.write_text(text)
    calls = _never_measure(monkeypatch)
    with pytest.warns(UserWarning, match=f"ignoring the cache entry .*{re.escape(problem)}"):
        row = compare(depth=3, frameworks=["torch"])[0]
    assert calls == ["torch"] and row.measured_linear == [1.0, 1.0, 1.0]  # measured again, not the entry
    assert json.loads(path.read_text())["linear"] == [1.0, 1.0, 1.0]  # and the entry replaced


def test_a_valid_cache_entry_is_read(monkeypatch):
    path = _entry("torch", 2)
    path.write_text(json.dumps({"linear": [0.5, 0.25], "activated": [0.5, None], "weight": [0.1], "bias": [0.0]}))
    calls = _never_measure(monkeypatch)
    row = compare(depth=2, frameworks=["torch"])[0]
    assert calls == [] and row.measured_linear == [0.5, 0.25]


USER_CODE = """
import math


def broken_factory():
    return math.sqrt(-1)
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_code_writepath.py").write_text(USER_CODE)
    (tmp_path / "import_fails_writepath.py").write_text("import math\nx = math.log(0)\n")
    (tmp_path / "specs_fail_writepath.py").write_text("bad_specs = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("user_code_writepath", "import_fails_writepath", "specs_fail_writepath"):
        sys.modules.pop(name, None)


def test_user_code_errors_in_compare_model_are_wrapped_naming_the_target(user_module, capsys):
    with pytest.raises(PolyinitError, match=r"factory broken_factory\(\) raised ValueError: math domain error"):
        compare_model("user_code_writepath:broken_factory")
    with pytest.raises(
        PolyinitError,
        match="'import_fails_writepath:f': importing 'import_fails_writepath' raised ValueError: math domain error",
    ):
        compare_model("import_fails_writepath:f")
    assert main(["compare", "--model", "user_code_writepath:broken_factory", "--no-measure"]) == 2
    assert "broken_factory() raised ValueError" in capsys.readouterr().err


def test_user_code_errors_in_conformance_targets_are_wrapped(user_module):
    with pytest.raises(PolyinitError, match="conformance: importing 'specs_fail_writepath' raised ZeroDivisionError"):
        load_specs("specs_fail_writepath:bad_specs")
    path = user_module / "specs_fail_writepath.py"
    with pytest.raises(
        PolyinitError,
        match=r"conformance '.*specs_fail_writepath.py:bad_specs': running .* raised "
        "ZeroDivisionError",
    ):
        load_specs(f"{path}:bad_specs")
