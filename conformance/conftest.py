"""The conformance suite's options: a fixed seed for CI, and a soak over fresh seeds.

pytest conformance                               # fixed seed 0
POLYINIT_SOAK=20 pytest conformance -n 2         # seeds 0..19 for every case
POLYINIT_SEED=1000 POLYINIT_SOAK=20 pytest ...   # seeds 1000..1019
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Shared values live in conformance_cases, not here: "conftest" is a module name that tests/
# has too, so importing from it would depend on which directory pytest put first on sys.path.
from conformance_cases import BACKENDS, MISSING, SEEDS, SOAK

from polyinit.conformance.selection import missing_imports, write_not_tested


def pytest_ignore_collect(collection_path, config):
    """A module that imports a framework that is not installed is not collected (see the summary)."""
    if (
        collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
        and missing_imports(collection_path)
    ):
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    write_not_tested(terminalreporter, os.path.dirname(os.path.abspath(__file__)), MISSING)


def pytest_report_header(config):
    return [
        f"polyinit conformance: backends {', '.join(BACKENDS)}; seeds {SEEDS[0]}..{SEEDS[-1]} ({SOAK})"
        + (f"; not installed: {', '.join(MISSING)}" if MISSING else "")
    ]
