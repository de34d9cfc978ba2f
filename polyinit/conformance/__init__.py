"""Statistical conformance: samples checked against a plan's closed-form promise.

One room, five parts:

* ``checks``    the statistics (support, mean, variance, kurtosis, KS, zeros, orthogonality, Haar
  signs, exact values), each with a fixed false-alarm probability; reads only ``Stats``.
* ``runner``    one case (spec x backend x shape x dtype) drawn through the backend contract
  (``polyinit.backends.Backend``), and ``run`` over many.
* ``cli``       ``polyinit conformance MODULE:ATTR`` for users' own specs and initializers.
* ``pytest_plugin``  the ``polyinit_conformance`` fixture.
* ``selection`` which backends a test run uses (``POLYINIT_TEST_BACKENDS``).

``import polyinit.conformance`` imports no framework.

>>> import polyinit
>>> checks = run_case(polyinit.get_backend("numpy"), polyinit.glorot_uniform(), (64, 32), polyinit.OUT_IN)
>>> all(c.passed for c in checks)
True
"""

from polyinit.conformance.checks import (
    ALPHA,
    Check,
    check,
    failures,
    kolmogorov_pvalue,
    required_samples,
    samples_needed,
    z_value,
)
from polyinit.conformance.runner import STANDARD_SHAPES, SUITE_ALPHA, CaseResult, applicable, run, run_case

__all__ = [
    "ALPHA",
    "STANDARD_SHAPES",
    "SUITE_ALPHA",
    "CaseResult",
    "Check",
    "applicable",
    "check",
    "failures",
    "kolmogorov_pvalue",
    "required_samples",
    "run",
    "run_case",
    "samples_needed",
    "z_value",
]
