"""``import polyinit`` defers what it does not need (serialize, transfer and the model records),
and the deferred names still work, whichever is imported first."""

import json
import subprocess
import sys

DEFERRED = ("json", "polyinit.serialize", "polyinit.transfer", "polyinit.params", "polyinit.logical")


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


def test_transfer_is_callable_whichever_is_imported_first():
    """``from polyinit.transfer import ...`` binds the module on the package; it stays callable."""
    result = _probe(
        "import json; from polyinit.transfer import TransferError; import polyinit, numpy as np;"
        "print(json.dumps([callable(polyinit.transfer), polyinit.transfer.TransferError is TransferError]))"
    )
    assert result == [True, True]


def test_an_unknown_attribute_is_still_an_attribute_error():
    import pytest

    import polyinit

    with pytest.raises(AttributeError, match="no_such_name"):
        polyinit.no_such_name
