"""The conformance suite's options: a fixed seed for CI, and a soak over fresh seeds.

    pytest conformance                               # fixed seed 0
    POLYINIT_SOAK=20 pytest conformance -n 2         # seeds 0..19 for every case
    POLYINIT_SEED=1000 POLYINIT_SOAK=20 pytest ...   # seeds 1000..1019
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from polyinit.testing import backends_for_run  # noqa: E402

BACKENDS, MISSING = backends_for_run()
BASE_SEED = int(os.environ.get("POLYINIT_SEED", "0"))
SOAK = int(os.environ.get("POLYINIT_SOAK", "1"))
# Seeds are spaced so that one case's draws (seed, seed+1, ...) never overlap the next seed's.
SEEDS = [BASE_SEED + 1000 * i for i in range(SOAK)]


def pytest_report_header(config):
    return [f"polyinit conformance: backends {', '.join(BACKENDS)}; seeds {SEEDS[0]}..{SEEDS[-1]} ({SOAK})"
            + (f"; not installed: {', '.join(MISSING)}" if MISSING else "")]
