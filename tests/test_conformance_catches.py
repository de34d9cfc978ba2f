"""The conformance runner catches the plausible one-line bugs of issue 15 point 9, each of which
passed the suite before: a wrong output dtype, an orthogonal draw without the QR sign correction,
changed layout presets, and public entry points that ignore their layout or dtype. Each bug is
introduced with monkeypatch; the same case passes without it."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends import get_backend
from polyinit.backends import numpy as reference
from polyinit.backends.contract import MEMBERS
from polyinit.conformance import run_case
from polyinit.conformance.selection import backends_for_run

FOUND, _ = backends_for_run()


def needs(name):
    return pytest.mark.skipif(name not in FOUND, reason=f"{name} is not installed here (and not required)")


def failed(checks):
    return {c.name for c in checks if not c.passed}


def test_float64_returned_for_float32_is_caught():
    wrapped = {name: getattr(reference, name) for name in MEMBERS}
    wrapped["sample_plan"] = lambda plan, seed: reference.sample_plan(plan, seed).astype(np.float64)
    broken = type("Float64Numpy", (), {k: staticmethod(v) if callable(v) else v for k, v in wrapped.items()})
    assert "dtype" in failed(run_case(broken, pi.glorot_uniform(), (256, 784), pi.OUT_IN))
    assert not failed(run_case(reference, pi.glorot_uniform(), (256, 784), pi.OUT_IN))


@needs("torch")
def test_torch_orthogonal_without_the_sign_fix_is_caught(monkeypatch):
    import torch

    backend = get_backend("torch")

    def unsigned(self, node, index):  # QR's Q as LAPACK returns it: Q Q^T = I still holds
        rows, cols = node.shape
        g = self._empty((max(rows, cols), min(rows, cols))).normal_(generator=self.generator)
        q, _ = torch.linalg.qr(g)
        return node.gain * (q if rows >= cols else q.T)

    case = (pi.Orthogonal(gain=1.5), (256, 784), pi.OUT_IN)
    assert not failed(run_case(backend, *case))
    monkeypatch.setattr(backend.Primitives, "OrthogonalMatrix", unsigned)
    assert failed(run_case(backend, *case)) == {"Haar signs"}


@needs("torch")
def test_torch_delta_orthogonal_style_draw_without_the_sign_fix_is_caught(monkeypatch):
    backend = get_backend("torch")
    monkeypatch.setattr(
        backend.common, "haar_orthogonal", lambda q, r, rows, cols, xp, transpose=None: q if rows >= cols else q.T
    )
    assert "Haar signs at the centre" in failed(run_case(backend, pi.DeltaOrthogonal(), (32, 16, 3, 3), pi.OUT_IN))


@needs("torch")
def test_torch_initializer_ignoring_its_layout_is_caught(monkeypatch):
    backend = get_backend("torch")
    original = backend.initializer
    monkeypatch.setattr(backend, "initializer", lambda spec, layout=backend.DEFAULT_LAYOUT: original(spec))
    # The example: he_normal on an IN_OUT (784, 256) weight drawn with std 0.0884, not 0.0505.
    assert "variance" in failed(run_case(backend, pi.he_normal(), (784, 256), pi.IN_OUT))
    # A small tensor too: its top-up goes through the same entry point.
    assert "variance" in failed(run_case(backend, pi.he_normal(), (5, 16, 32), pi.IN_OUT))


@needs("jax")
def test_jax_initializer_ignoring_its_dtype_is_caught(monkeypatch):
    backend = get_backend("jax")
    original = backend.initializer

    def dtype_dropped(spec, layout=backend.DEFAULT_LAYOUT):
        init = original(spec, layout)
        return lambda key, shape, dtype=None: init(key, shape)

    case = (pi.glorot_uniform(), (256, 784), pi.OUT_IN, "bfloat16")
    assert not failed(run_case(backend, *case))
    monkeypatch.setattr(backend, "initializer", dtype_dropped)
    assert "dtype" in failed(run_case(backend, *case))


PRESET_BUGS = [
    ("keras", "dense", ("out in", "in out")),
    ("torch", "conv_transpose", ("in out *", "in out *")),
    ("keras", "depthwise_conv", ("* batch out", "* batch out")),
]


@pytest.mark.parametrize("framework,kind,changed", PRESET_BUGS, ids=[f"{f}-{k}" for f, k, _ in PRESET_BUGS])
def test_changed_presets_are_caught(monkeypatch, framework, kind, changed):
    if framework not in FOUND:
        pytest.skip(f"{framework} is not installed here (and not required)")
    from polyinit.conformance.presets import preset_checks

    assert all(c.passed for c in preset_checks(framework, (kind,)))
    from polyinit.frameworks import get_framework

    monkeypatch.setitem(get_framework(framework).presets, kind, changed)
    bad = [c.name for c in preset_checks(framework, (kind,)) if not c.passed]
    assert any("native preset" in name and "variance" in name for name in bad), bad
