"""The backend fixture's contract: a backend named in POLYINIT_TEST_BACKENDS that cannot be
imported fails the run; unknown names are errors too."""

import pytest

import polyinit as pi
from polyinit import backends
from polyinit.conformance import selection as testing


def test_required_backend_missing_fails(monkeypatch):
    monkeypatch.setitem(
        backends.REGISTRY, "fakeframe", ("polyinit.backends.fakeframe", "no_such_framework_xyz", "fake")
    )
    monkeypatch.setenv("POLYINIT_TEST_BACKENDS", "numpy,fakeframe")
    with pytest.raises(pi.BackendUnavailableError, match="requires 'fakeframe'"):
        testing.backends_for_run()


def test_unrequired_missing_backend_is_reported_not_required(monkeypatch):
    monkeypatch.setitem(
        backends.REGISTRY, "fakeframe", ("polyinit.backends.fakeframe", "no_such_framework_xyz", "fake")
    )
    monkeypatch.delenv("POLYINIT_TEST_BACKENDS", raising=False)
    found, missing = testing.backends_for_run()
    assert "numpy" in found and "fakeframe" in missing and "fakeframe" not in found


def test_unknown_required_name(monkeypatch):
    monkeypatch.setenv("POLYINIT_TEST_BACKENDS", "numpy,caffe")
    with pytest.raises(pi.PolyinitError, match="caffe"):
        testing.backends_for_run()


def test_an_uninstalled_framework_is_excused_only_when_not_required(monkeypatch):
    from polyinit.conformance.selection import FRAMEWORKS, uninstalled_framework

    monkeypatch.setattr(testing, "FRAMEWORKS", FRAMEWORKS + ("no_such_framework_xyz",))
    monkeypatch.setitem(testing._BACKEND_OF, "no_such_framework_xyz", "fakeframe")
    monkeypatch.setitem(
        backends.REGISTRY, "fakeframe", ("polyinit.backends.fakeframe", "no_such_framework_xyz", "fake")
    )
    error = ModuleNotFoundError("No module named 'no_such_framework_xyz'", name="no_such_framework_xyz")
    monkeypatch.delenv("POLYINIT_TEST_BACKENDS", raising=False)
    assert uninstalled_framework(error) == "no_such_framework_xyz"
    monkeypatch.setenv("POLYINIT_TEST_BACKENDS", "numpy,fakeframe")
    assert uninstalled_framework(error) is None  # required: the failure stands
    assert uninstalled_framework(ModuleNotFoundError("x", name="numpy")) is None  # installed
    assert uninstalled_framework(ValueError("no import")) is None
