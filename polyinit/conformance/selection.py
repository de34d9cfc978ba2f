"""Backend selection for test suites (polyinit's own and users'): one fixture, named per backend.

``POLYINIT_TEST_BACKENDS=numpy,torch,...`` names the backends a run requires: one that cannot be
imported fails the run instead of being skipped. Unset, every backend whose framework imports here
is used, and the ones missing are reported in the session header rather than skipped in silence.
"""

from __future__ import annotations

import os

from polyinit.backends import REGISTRY, get_backend
from polyinit.errors import BackendUnavailableError, PolyinitError


def required_backends() -> "list[str] | None":
    raw = os.environ.get("POLYINIT_TEST_BACKENDS", "").strip()
    if not raw:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise PolyinitError(f"POLYINIT_TEST_BACKENDS names unknown backend(s) {unknown}; known: {list(REGISTRY)}")
    return names


def backends_for_run() -> tuple[list[str], list[str]]:
    """(backends to test, backends missing). Required-but-missing backends raise."""
    required = required_backends()
    names = required if required is not None else list(REGISTRY)
    found, missing = [], []
    for name in names:
        try:
            get_backend(name)
        except BackendUnavailableError as error:
            if required is not None:
                raise BackendUnavailableError(f"POLYINIT_TEST_BACKENDS requires {name!r}: {error}") from None
            missing.append(name)
            continue
        found.append(name)
    return found, missing
