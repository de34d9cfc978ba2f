"""pytest plugin: the ``polyinit_conformance`` fixture checks your own specs in your CI.

    def test_my_rule(polyinit_conformance):
        polyinit_conformance(my_spec, backends=["numpy", "torch"])

    def test_my_own_initializer(polyinit_conformance):          # the CLI's (spec, fn) form
        polyinit_conformance((polyinit.glorot_uniform(), my_init))   # my_init(shape, seed) -> array

A spec runs the conformance runner over the standard shapes where it applies, in each backend; a
pair ``(spec, fn)`` or triple ``(spec, fn, layout)`` checks your own ``fn(shape, seed)`` (laid out
as ``layout``, default ``OUT_IN``) against the spec, shape first. The test fails with every failing
statistic named (expected, observed, tolerance, backend, shape, dtype). Loading the plugin imports
no framework. It is registered by the ``pytest11`` entry point when polyinit is installed; from a
plain checkout, add ``pytest_plugins = ["polyinit.conformance.pytest_plugin"]`` to a conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import pytest


@pytest.fixture
def polyinit_conformance() -> Callable[..., list]:
    def check_spec(
        spec: Any,
        *,
        backends: Optional[Sequence[str]] = None,
        shapes: Optional[dict] = None,
        dtypes: Sequence[str] = ("float32",),
        seed: int = 0,
    ) -> list:
        from polyinit.backends import available_backends
        from polyinit.conformance.cli import _is_pair, user_results
        from polyinit.conformance.runner import run

        if _is_pair(spec):
            own, fn = spec[0], spec[1]
            layout = spec[2] if len(spec) == 3 else None
            kwargs = {"layout": layout} if layout is not None else {}
            results = user_results(getattr(fn, "__name__", "yours"), own, fn, seed=seed, shapes=shapes, **kwargs)
        else:
            results = run({getattr(spec, "kind", "spec"): spec}, backends or available_backends(), shapes, dtypes, seed)
        assert results, f"{spec!r} applies to no standard shape; pass shapes={{name: (shape, layout)}}"
        failed = [r for r in results if not r.passed]
        assert not failed, "\n".join(r.failures_text() for r in failed)
        return results

    return check_spec
