import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from polyinit.conformance.selection import backends_for_run  # noqa: E402

BACKENDS, MISSING = backends_for_run()


def pytest_report_header(config):
    return [f"polyinit backends: {', '.join(BACKENDS)}" + (f"; not installed: {', '.join(MISSING)}" if MISSING else "")]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each installed (or required) backend module, with test ids named after it (-k torch)."""
    from polyinit.backends import get_backend

    return get_backend(request.param)
