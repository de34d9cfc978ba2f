"""``Normalized``: a random leaf L2-normalised along a logical axis (nGPT), through the spec, the
plan, every backend's native draw, the portable draws (bit for bit across frameworks) and the
conformance checks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyinit as pi
from polyinit.conformance import check, failures, samples_needed
from polyinit.errors import ShapeError, SpecError

NGPT_ROW = pi.normalized(pi.TruncatedNormal(std=0.0625, low=-3.0, high=3.0, bounds="std"), axis="in")
SPECS = {
    "normal_rows": pi.normalized(pi.Normal(std=0.02), axis="in"),
    "normal_columns": pi.normalized(pi.Normal(std=0.02), axis="out"),
    "truncated_rows": NGPT_ROW,
    "he_uniform_axis0": pi.normalized(pi.he_uniform(), axis=0),
}


def _norm_error(values: np.ndarray, axis: int) -> float:
    return float(np.max(np.abs(np.linalg.norm(np.asarray(values, np.float64), axis=axis) - 1.0)))


# --- spec and plan ------------------------------------------------------------------------------


def test_the_axis_is_a_role_read_through_each_layout():
    """'in' is torch's dim 1 of (out, in) and Keras's dim 0 of (in, out): each output unit's
    weight vector has norm 1 in both."""
    torch_plan = pi.resolve(SPECS["normal_rows"], (64, 256), pi.OUT_IN)
    keras_plan = pi.resolve(SPECS["normal_rows"], (256, 64), pi.IN_OUT)
    assert (torch_plan.stats.unit_norm, keras_plan.stats.unit_norm) == (1, 0)
    from polyinit.backends.numpy import draw

    assert _norm_error(draw(torch_plan, np.random.default_rng(0)), 1) < 1e-6
    assert _norm_error(draw(keras_plan, np.random.default_rng(0)), 0) < 1e-6


def test_closed_form_moments_of_a_uniform_direction():
    """A centred normal's direction: E[x^2] = 1/m, excess kurtosis -6/(m+2) (m = 256)."""
    stats = pi.resolve(SPECS["normal_rows"], (64, 256), pi.OUT_IN).stats
    assert stats.moments == (0.0, 1 / 256, 0.0, 3 / (256 * 258))
    assert stats.excess_kurtosis == pytest.approx(-6 / 258)
    assert (stats.low, stats.high) == (-1.0, 1.0)
    # A truncated operand's direction has no closed form: judged against the reference's draws.
    assert pi.resolve(NGPT_ROW, (64, 256), pi.OUT_IN).stats.moments is None
    # A positive operand gives a positive direction.
    assert pi.resolve(pi.normalized(pi.Uniform(low=0.5, high=1.0)), (4, 8), pi.OUT_IN).stats.low == 0.0


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: pi.normalized(pi.Constant(value=1.0)), SpecError, "one random leaf"),
        (lambda: pi.normalized(pi.Normal() * 2.0), SpecError, "one random leaf"),
        (lambda: pi.normalized(pi.Normal(), axis="batch"), SpecError, "axis"),
        (lambda: pi.resolve(pi.normalized(pi.Normal(), axis="out"), (1, 8), pi.OUT_IN), ShapeError, "one element"),
        (lambda: pi.resolve(pi.normalized(pi.Normal(), axis=2), (4, 8), pi.OUT_IN), ShapeError, "out of range"),
    ],
)
def test_bad_input_is_refused_with_what_and_where(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_json_round_trip():
    assert pi.from_json(pi.to_json(NGPT_ROW)) == NGPT_ROW


# --- native draws --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_every_backend_keeps_the_promise(backend, name):
    plan = pi.resolve(SPECS[name], (128, 96), pi.IN_OUT, "float32")
    draws = [backend.to_numpy(backend.sample_plan(plan, seed)) for seed in range(samples_needed(plan))]
    results = check(draws, plan)
    assert any(r.name.startswith("unit norm") for r in results)
    assert results and not failures(results), "\n".join(map(str, failures(results)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_low_precision_norms_are_within_the_dtypes_rounding(backend, dtype):
    if dtype not in backend.DTYPES:
        pytest.skip(f"{backend.NAME} has no {dtype}")
    plan = pi.resolve(SPECS["normal_columns"], (96, 128), pi.OUT_IN, dtype)
    draws = [backend.to_numpy(backend.sample_plan(plan, seed)) for seed in range(samples_needed(plan))]
    assert not failures(check(draws, plan))


def test_the_checks_catch_a_wrong_axis_and_a_wrong_law():
    from polyinit.backends.numpy import draw

    plan = pi.resolve(SPECS["normal_rows"], (64, 256), pi.OUT_IN)
    columns = pi.resolve(SPECS["normal_columns"], (64, 256), pi.OUT_IN)
    rng = np.random.default_rng(1)
    wrong_axis = failures(check([draw(columns, rng) for _ in range(8)], plan))
    assert any(r.name.startswith("unit norm") for r in wrong_axis)
    # Unit rows, but of a uniform draw's directions: the direction law's kurtosis tells them apart.
    uniform = pi.resolve(pi.normalized(pi.Uniform(low=-1.0, high=1.0), axis="in"), (64, 256), pi.OUT_IN)
    wrong_law = failures(check([draw(uniform, rng) for _ in range(samples_needed(plan))], plan))
    assert [r.name for r in wrong_law] == ["excess kurtosis"]


# --- portable draws ------------------------------------------------------------------------------

PORTABLE = {
    "rows_odd": (NGPT_ROW, (257, 1001)),
    "columns": (pi.normalized(pi.Normal(mean=0.1, std=1e-25), axis="out"), (300, 64)),
    "middle_axis": (pi.normalized(pi.Uniform(low=0.0, high=3.0), axis=1), (3, 5, 7)),
}


def _reference():
    from polyinit.backends.numpy import draw_portable

    return {
        name: draw_portable(pi.resolve(spec, shape, pi.OUT_IN), 2024, f"model.{name}")
        for name, (spec, shape) in PORTABLE.items()
    }


@pytest.fixture(scope="module")
def reference():
    return _reference()


def _differing(a, b) -> int:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    return int(np.sum(a.view(np.uint32) != b.view(np.uint32)))


def test_portable_draws_are_the_same_bits_in_every_backend(backend, reference):
    for name, (spec, shape) in PORTABLE.items():
        plan = pi.resolve(spec, shape, pi.OUT_IN)
        values = backend.to_numpy(backend.draw_portable(plan, 2024, f"model.{name}"))
        assert _differing(values, reference[name]) == 0, (backend.NAME, name)


def test_portable_under_jax_jit_and_tensorflow_xla(reference):
    """XLA rewrites x / broadcast(n) as x * broadcast(1 / n) and a / sqrt(b) as a * rsqrt(b):
    the portable op spells its quotient out, so compiled programs give the same bits."""
    import jax
    import tensorflow as tf

    from polyinit.backends.jax import draw_portable
    from polyinit.portable import evaluate
    from polyinit.portable.xp_tensorflow import Ops

    spec, shape = PORTABLE["rows_odd"]
    plan = pi.resolve(spec, shape, pi.OUT_IN)
    jitted = jax.jit(lambda: draw_portable(plan, 2024, "model.rows_odd"))()
    assert _differing(np.asarray(jitted), reference["rows_odd"]) == 0
    compiled = tf.function(lambda: evaluate.draw(Ops(), plan, 2024, "model.rows_odd"), jit_compile=True)()
    assert _differing(compiled.numpy(), reference["rows_odd"]) == 0


def test_portable_values_are_the_correctly_computed_directions(reference):
    """Against float64 arithmetic on the same float32 draw before the projection: within 4 float32
    ulps (a sum by halves, a root, a reciprocal and a product each round once), and unit norms."""
    from polyinit.backends.numpy import draw_portable

    for name, (spec, shape) in PORTABLE.items():
        plan = pi.resolve(spec.operand, shape, pi.OUT_IN)
        raw = draw_portable(plan, 2024, f"model.{name}").astype(np.float64)
        axis = pi.resolve(spec, shape, pi.OUT_IN).stats.unit_norm
        exact = raw / np.linalg.norm(raw, axis=axis, keepdims=True)
        ulps = np.abs(reference[name] - exact) / np.spacing(np.abs(exact).astype(np.float32))
        assert float(np.max(ulps)) <= 4.0, (name, float(np.max(ulps)))
        assert _norm_error(reference[name], axis) <= 64 * 2.0**-24


KERAS_PROBE = textwrap.dedent("""
    import sys, keras, numpy as np
    sys.path.insert(0, {tests!r})
    from test_normalized import PORTABLE
    import polyinit as pi
    from polyinit.backends.keras import draw_portable, to_numpy
    assert keras.backend.backend() == {backend!r}
    np.savez(sys.argv[1], **{{name: to_numpy(draw_portable(pi.resolve(spec, shape, pi.OUT_IN), 2024,
                                                           "model." + name)).astype(np.float32)
                            for name, (spec, shape) in PORTABLE.items()}})
""")


@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax", "torch"])
def test_portable_on_every_keras_backend(keras_backend, reference, tmp_path):
    import keras

    if keras.backend.backend() == keras_backend:
        pytest.skip("the current Keras backend is covered by the backend fixture")
    out = str(tmp_path / "draws.npz")
    probe = KERAS_PROBE.format(tests=os.path.dirname(__file__), backend=keras_backend)
    env = dict(os.environ, KERAS_BACKEND=keras_backend, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", probe, out], check=True, env=env, capture_output=True)
    draws = np.load(out)
    for name in PORTABLE:
        assert _differing(draws[name], reference[name]) == 0, (keras_backend, name)


def test_portable_apply_gives_the_same_unit_vectors_in_torch_keras_and_nnx():
    """One rule on the same CNN in three frameworks: "in" is torch's dim 1 of (out, in, kh, kw)
    and Keras's and nnx's dim -2 of (kh, kw, in, out); the weights are the same bits in the
    logical order (out, in, kh, kw), each (out, kh, kw) fibre along "in" a unit vector."""
    from test_portable_models import keras_cnn, logical, nnx_cnn, torch_cnn

    from polyinit.rules import Rules, apply, role

    rules = Rules([(role("weight"), pi.normalized(pi.he_normal(), axis="in")), (role("bias"), pi.zeros())], seed=7)
    weights = {}
    for name, build in (("torch", torch_cnn), ("keras", keras_cnn), ("nnx", nnx_cnn)):
        model, _ = build()
        apply(model, rules, portable=True)
        weights[name] = [w for w in logical(model, name) if w.ndim > 1]
    assert len(weights["torch"]) == 3
    for w in weights["torch"]:
        assert _norm_error(w, 1) <= 64 * 2.0**-24
    for name in ("keras", "nnx"):
        for a, b in zip(weights["torch"], weights[name]):
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), name
