"""``import polyinit`` defers what it does not need (serialize, transfer and the model records),
and the deferred names still work, whichever is imported first."""

import json
import subprocess
import sys

DEFERRED = ("json", "polyinit.serialize", "polyinit.transferring", "polyinit.params", "polyinit.logical")


def _probe(code: str) -> object:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_polyinit_defers_serialize_and_transfer():
    loaded = _probe(
        f"import json as _j, sys; sys.modules.pop('json'); import polyinit;"
        f"print(_j.dumps([m for m in {DEFERRED!r} if m in sys.modules]))"
    )
    assert loaded == []


def test_deferred_names_load_on_first_use():
    result = _probe(
        "import json, polyinit as pi;"
        "spec = pi.from_json(pi.to_json(pi.he_normal()));"
        "print(json.dumps([spec == pi.he_normal(), pi.from_dict(pi.to_dict(spec)) == spec,"
        " callable(pi.transfer), 'transfer' in dir(pi)]))"
    )
    assert result == [True, True, True, True]


def test_transfer_is_the_function_whichever_is_imported_first():
    """The implementation module is ``polyinit.transferring``; importing it first (which binds that
    module on the package) leaves ``polyinit.transfer`` the function and ``polyinit.TransferError``
    its error class."""
    result = _probe(
        "import inspect, json;"
        "from polyinit.transferring import TransferError, transfer; import polyinit;"
        "print(json.dumps([inspect.isfunction(polyinit.transfer), polyinit.transfer is transfer,"
        " polyinit.TransferError is TransferError]))"
    )
    assert result == [True, True, True]


def test_transfer_error_loads_lazily_with_transfer():
    result = _probe(
        "import json, sys, polyinit; error = polyinit.TransferError;"
        "print(json.dumps([issubclass(error, polyinit.PolyinitError), 'polyinit.transferring' in sys.modules,"
        " 'TransferError' in dir(polyinit)]))"
    )
    assert result == [True, True, True]


def test_an_unknown_attribute_is_still_an_attribute_error():
    import pytest

    import polyinit

    with pytest.raises(AttributeError, match="no_such_name"):
        polyinit.no_such_name
