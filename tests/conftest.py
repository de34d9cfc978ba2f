import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow and triton (torch's compiler, which transformers' models import) each carry LLVM; when
# triton loads after TensorFlow it registers LLVM's options a second time and the process aborts
# ("Option 'bitcode-mdindex-threshold' registered more than once"). Loaded first, both work, so a
# session that traces a Keras model and then a transformers model runs (0.7 s, no torch import).
import importlib.util

if importlib.util.find_spec("triton") is not None and importlib.util.find_spec("tensorflow") is not None:
    import triton  # noqa: F401

import pytest

from polyinit.conformance.selection import (
    backends_for_run,
    missing_imports,
    uninstalled_framework,
    write_not_tested,
)

BACKENDS, MISSING = backends_for_run()


def pytest_ignore_collect(collection_path, config):
    """A module (or tests/real_mxnet) that imports a framework that is not installed is not
    collected, and the summary says so; a required backend that is missing has already failed
    the run in ``backends_for_run``."""
    if (
        collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
        and missing_imports(collection_path)
    ):
        return True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that imports, inside its body, a framework that is not installed here (and whose
    backend POLYINIT_TEST_BACKENDS does not require) is reported as skipped with that reason, not
    as a failure; required or installed, the error stands."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and report.failed:
        name = uninstalled_framework(call.excinfo.value)
        if name is not None:
            report.outcome = "skipped"
            report.longrepr = (
                str(item.path),
                item.location[1] or 0,
                f"Skipped: needs {name}, which is not installed here",
            )


def pytest_configure(config):
    # The polyinit_conformance fixture from a plain checkout: the pytest11 entry point registers it
    # when polyinit is pip-installed; otherwise register it here.
    if not config.pluginmanager.has_plugin("polyinit") and not config.pluginmanager.has_plugin(
        "polyinit.conformance.pytest_plugin"
    ):
        config.pluginmanager.import_plugin("polyinit.conformance.pytest_plugin")


def pytest_report_header(config):
    return [f"polyinit backends: {', '.join(BACKENDS)}" + (f"; not installed: {', '.join(MISSING)}" if MISSING else "")]


def pytest_terminal_summary(terminalreporter):
    write_not_tested(terminalreporter, os.path.dirname(os.path.abspath(__file__)), MISSING)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each installed (or required) backend module, with test ids named after it (-k torch)."""
    from polyinit.backends import get_backend

    return get_backend(request.param)
