"""pytest plugin: the ``polyinit_conformance`` fixture checks your own specs in your CI.

    def test_my_rule(polyinit_conformance):
        polyinit_conformance(my_spec, backends=["numpy", "torch"])

It runs the conformance runner over the standard shapes where the spec applies and fails the test
with every failing statistic named (expected, observed, tolerance, backend, shape, dtype).
Loading the plugin imports no framework.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pytest


@pytest.fixture
def polyinit_conformance():
    def check_spec(spec, *, backends: Optional[Sequence[str]] = None, shapes=None,
                   dtypes: Sequence[str] = ("float32",), seed: int = 0):
        from polyinit.backends import available_backends
        from polyinit.conformance.runner import run

        results = run({getattr(spec, "kind", "spec"): spec}, backends or available_backends(), shapes, dtypes, seed)
        assert results, f"{spec!r} applies to no standard shape; pass shapes={{name: (shape, layout)}}"
        failed = [r for r in results if not r.passed]
        assert not failed, "\n".join(r.failures_text() for r in failed)
        return results

    return check_spec
