"""Issue 14's examples, one test each: a clear PolyinitError naming the culprit, or the right result,
through every backend's own public entry point."""

import dataclasses
import doctest
import gc
import importlib
import math

import numpy as np
import pytest

import polyinit as pi
from polyinit import native
from polyinit.spec import MAX_DEPTH


def draw_native(backend, spec, shape, dtype="float32", layout=None):
    """``spec`` drawn through the backend's native public entry point, as a float64 numpy array."""
    name = backend.NAME
    if name == "numpy":
        return backend.sample(spec, shape, rng=np.random.default_rng(0), layout=layout or pi.OUT_IN, dtype=dtype)
    if name == "torch":
        import torch

        tensor = torch.empty(shape, dtype=getattr(torch, dtype))
        args = (layout,) if layout is not None else ()
        return backend.to_numpy(backend.initializer(spec, *args)(tensor, torch.Generator().manual_seed(0)))
    if name == "keras":
        return backend.to_numpy(backend.Initializer(spec, layout or backend.DEFAULT_LAYOUT, seed=0)(shape, dtype))
    if name == "jax":
        import jax

        init = backend.initializer(spec, layout or backend.DEFAULT_LAYOUT)
        return backend.to_numpy(init(jax.random.key(0), shape, dtype))
    if name == "mxnet":
        arr = np.empty(shape, dtype)
        backend.Polyinit(spec, layout or backend.DEFAULT_LAYOUT, seed=0)("param_weight", arr)
        return arr.astype(np.float64)
    raise AssertionError(name)


# (id, spec, shape, dtype, what the message must say)
REFUSED = [
    ("divide_by_zero", lambda: pi.Normal() / 0, (64,), "float32", r"divisor constant\(0\) has support \[0, 0\]"),
    (
        "divide_by_mask",
        lambda: pi.Normal() / (pi.Uniform(low=0.0, high=1.0) >= 0.5),
        (64,),
        "float32",
        r"divisor ge\(.*\) has support \[0, 1\], which contains 0",
    ),
    (
        "reciprocal_of_symmetric_uniform",
        lambda: 1.0 / pi.Uniform(low=-1.0, high=1.0),
        (64,),
        "float32",
        r"divisor uniform\(-1, 1\) has support \[-1, 1\]",
    ),
    ("reciprocal_of_uniform_from_0", lambda: 1.0 / pi.Uniform(low=0.0, high=1.0), (64,), "float32", "divisor"),
    ("reciprocal_of_normal", lambda: 1.0 / pi.Normal(mean=100.0), (64,), "float32", "divisor normal"),
    (
        "uniform_beyond_float16",
        lambda: pi.Uniform(low=-1e5, high=1e5),
        (64,),
        "float16",
        "beyond float16's largest finite value 6.55e\\+04",
    ),
    ("normal_beyond_float32", lambda: pi.Normal(std=1e38), (64,), "float32", "float32"),
    ("orthogonal_gain_1e200", lambda: pi.Orthogonal(gain=1e200), (4, 4), "float32", "reaches 1e\\+200"),
    (
        "intermediate_overflow",
        lambda: pi.Uniform() * 1e30 * 1e30 / 1e30,
        (64,),
        "float32",
        "reaches 1e\\+60, beyond float32",
    ),
    ("uniform_width_overflows", lambda: pi.Uniform(low=-3e38, high=3e38), (64,), "float32", "float32"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_non_finite_plans_are_refused_at_resolve(case):
    _, build, shape, dtype, match = case
    with pytest.raises(pi.NonFiniteError, match=match):
        pi.resolve(build(), shape, pi.OUT_IN, dtype)


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_no_backend_writes_a_non_finite_value(backend, case):
    _, build, shape, dtype, _ = case
    if dtype not in backend.DTYPES:
        pytest.skip(f"{backend.NAME} has no {dtype}")
    with pytest.raises(pi.NonFiniteError):
        draw_native(backend, build(), shape, dtype)


def test_intermediate_overflow_is_fine_in_float64():
    values = pi.backends.numpy.sample(
        pi.Uniform() * 1e30 * 1e30 / 1e30, (1000,), rng=np.random.default_rng(0), dtype="float64"
    )
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1e30


def test_divisor_bounded_away_from_zero_is_drawn_and_promised_exactly():
    # 1/U with U ~ U[0.5, 1]: E = 2 ln 2, E[x^2] = 2, so Var = 2 - 4 ln(2)^2 (by hand).
    plan = pi.resolve(1.0 / pi.Uniform(low=0.5, high=1.0), (1000,))
    assert plan.stats.mean == pytest.approx(2 * math.log(2), rel=1e-6)
    assert plan.stats.var == pytest.approx(2 - 4 * math.log(2) ** 2, rel=1e-5)
    assert (plan.stats.low, plan.stats.high) == pytest.approx((1.0, 2.0))


def test_mask_that_is_always_one_is_a_valid_divisor():
    # U[0.5, 1) >= 0.25 is 1 everywhere: the interval analysis decides the comparison.
    plan = pi.resolve(pi.Normal() / (pi.Uniform(low=0.5, high=1.0) >= 0.25), (8,))
    assert plan.size == 8


def test_huge_float64_values_give_a_plan_without_moments():
    # gain 1e200 fits float64, its square does not: the plan says it cannot promise a variance.
    plan = pi.resolve(pi.Orthogonal(gain=1e200), (4, 4), pi.OUT_IN, "float64")
    assert plan.stats.moments is None and plan.stats.std is None
    values = pi.backends.numpy.draw(plan, np.random.default_rng(0))
    assert np.isfinite(values).all()
    q = values / 1e200
    assert np.allclose(q @ q.T, np.eye(4), atol=1e-12)


# --- numbers from numpy and JAX -----------------------------------------------------------


def test_numpy_zero_d_arrays_and_scalars_are_numbers():
    assert pi.Normal(std=np.array(0.02)) == pi.Normal(std=0.02)
    assert pi.Uniform(low=np.float32(-1), high=np.int64(1)) == pi.Uniform(low=-1.0, high=1.0)
    assert pi.Dirac(groups=np.int64(2)).groups == 2
    assert np.float64(2.0) * pi.Normal() == pi.Constant(value=2.0) * pi.Normal()
    assert np.array(2.0) * pi.Normal() == pi.Constant(value=2.0) * pi.Normal()


@pytest.mark.parametrize(
    "value",
    [
        np.array([0.02]),
        np.bool_(True),
        np.array(True),
        "0.02",
        1j,
        np.complex128(1),
        np.array(np.nan),
        np.float32(np.inf),
        None,
    ],
)
def test_non_numbers_are_still_refused(value):
    with pytest.raises(pi.SpecError, match="std"):
        pi.Normal(std=value)


@pytest.mark.parametrize("value", [2.5, np.float64(2.0), True, np.bool_(False), "2"])
def test_integer_arguments_refuse_floats_and_bools(value):
    with pytest.raises(pi.SpecError, match="groups"):
        pi.Dirac(groups=value)


def test_jax_scalars_are_numbers():
    jnp = pytest.importorskip("jax.numpy")
    spec = pi.Orthogonal(gain=jnp.sqrt(2.0))
    assert spec.gain == pytest.approx(math.sqrt(2.0), rel=1e-7)
    product = jnp.sqrt(2.0) * pi.Normal()
    assert isinstance(product, pi.Spec) and product.left.value == pytest.approx(math.sqrt(2.0), rel=1e-7)
    assert pi.Normal() * jnp.float32(3.0) == pi.Normal() * 3.0
    with pytest.raises(pi.SpecError, match="gain"):
        pi.Orthogonal(gain=jnp.array([1.0, 2.0]))


def test_numpy_integer_seeds_in_keras_and_mxnet():
    pytest.importorskip("keras")
    from polyinit.backends import keras as keras_backend

    a = keras_backend.to_numpy(keras_backend.Initializer(pi.Normal(), seed=np.int64(3))((5,)))
    b = keras_backend.to_numpy(keras_backend.Initializer(pi.Normal(), seed=3)((5,)))
    assert np.array_equal(a, b)
    assert keras_backend.Initializer(pi.Normal(), seed=np.int64(3)).get_config()["seed"] == 3
    from polyinit.backends import mxnet as mx_backend

    x, y = np.empty(5, np.float32), np.empty(5, np.float32)
    mx_backend.Polyinit(pi.Normal(), seed=np.int64(3))("w_weight", x)
    mx_backend.Polyinit(pi.Normal(), seed=3)("w_weight", y)
    assert np.array_equal(x, y)


@pytest.mark.parametrize("seed", [1.5, "0", True, -1, np.float64(2.0)])
def test_bad_seeds_are_refused(seed):
    from polyinit.backends import mxnet as mx_backend

    with pytest.raises(pi.PolyinitError, match="seed"):
        mx_backend.Polyinit(pi.Normal(), seed=seed)
    pytest.importorskip("keras")
    from polyinit.backends import keras as keras_backend

    with pytest.raises(pi.PolyinitError, match="seed"):
        keras_backend.Initializer(pi.Normal(), seed=seed)


# --- errors name the user's own argument ----------------------------------------------------

NAMED = [
    (lambda: pi.glorot_uniform(gain=0.0), "glorot_uniform: gain must be > 0, received gain=0.0"),
    (lambda: pi.glorot_normal(gain=-1.0), "glorot_normal: gain must be > 0"),
    (lambda: pi.glorot_uniform(gain=1e200), r"glorot_uniform: gain\^2 = inf"),
    (lambda: pi.he_uniform(a=math.inf), "he_uniform: a must be finite, received a=inf"),
    (lambda: pi.he_normal(a=1e200), "he_normal: a=1e\\+200 gives gain"),
    (lambda: pi.he_uniform(a="x"), "he_uniform: a must be a real number"),
    (lambda: pi.he_uniform(mode="fan_mean"), "unknown mode 'fan_mean'"),
    (lambda: native.mxnet_xavier(magnitude=-3.0), "mxnet_xavier: magnitude must be > 0, received magnitude=-3.0"),
    (lambda: native.mxnet_msra_prelu(slope=math.nan), "mxnet_msra_prelu: slope must be finite"),
    (lambda: native.mxnet_uniform(scale=-1.0), "mxnet_uniform: scale must be > 0"),
    (lambda: native.mxnet_uniform(scale="a"), "mxnet_uniform: scale must be a real number"),
    (lambda: native.mxnet_normal(sigma=0.0), "mxnet_normal: sigma must be > 0"),
    (lambda: native.keras_random_uniform(minval=1.0, maxval=0.0), "minval must be < maxval"),
    (lambda: native.keras_random_normal(stddev=-1.0), "keras_random_normal: stddev must be > 0"),
    (lambda: native.keras_truncated_normal(stddev=0.0), "stddev must be > 0"),
    (lambda: native.jax_uniform(scale=0.0), "jax_uniform: scale must be > 0"),
    (lambda: native.jax_normal(stddev=-2.0), "jax_normal: stddev must be > 0"),
    (lambda: native.jax_truncated_normal(lower=2.0, upper=-2.0), "lower must be < upper"),
    (lambda: native.jax_orthogonal(column_axis="in"), "column_axis must be an integer"),
    (lambda: native.torch_uniform(a=1.0, b=0.0), "torch_uniform: a must be < b"),
    (lambda: native.torch_trunc_normal(a=1.0, b=-1.0), "torch_trunc_normal: a must be < b"),
    (lambda: pi.lstm_bias(forget_bias=math.inf), "lstm_bias: forget_bias must be finite"),
    (lambda: pi.lstm_bias(base=0.0), "lstm_bias: base must be a spec"),
    (lambda: pi.calculate_gain("leaky_relu", math.inf), "param must be finite"),
]


@pytest.mark.parametrize("build,match", NAMED, ids=[m[:40] for _, m in NAMED])
def test_errors_name_the_users_argument(build, match):
    with pytest.raises(pi.SpecError, match=match) as info:
        build()
    assert "scale=" not in str(info.value) or "scale" in match  # never the derived VarianceScaling scale


# --- no bare Python or framework errors -----------------------------------------------------


def test_blocks_on_a_rank_1_shape_without_layout():
    spec = pi.Blocks(axis="in", parts=(pi.zeros(), pi.ones()))
    with pytest.raises(pi.ShapeError, match="Blocks: shape \\(4,\\) under no layout"):
        pi.resolve(spec, (4,))
    with pytest.raises(pi.ShapeError, match="needs a layout"):
        pi.resolve(pi.Blocks(parts=(pi.zeros(), pi.ones())), (4, 4))
    plan = pi.resolve(pi.Blocks(parts=(pi.zeros(), pi.ones())), (4,))  # 'out' is the bias axis
    assert plan.stats.mean == pytest.approx(0.5)


def test_string_layouts_are_accepted_by_every_initializer(backend):
    spec = pi.Orthogonal(axis="in")
    layout = "out in" if backend.NAME in ("torch", "mxnet", "numpy") else "in out"
    by_string = draw_native(backend, spec, (6, 4), layout=layout)
    by_object = draw_native(backend, spec, (6, 4), layout=pi.Layout(layout))
    assert np.array_equal(by_string, by_object)


def test_bad_layouts_are_refused_by_every_initializer(backend):
    with pytest.raises(pi.PolyinitError, match="layout|Layout"):
        draw_native(backend, pi.Normal(), (6, 4), layout=3)
    with pytest.raises(pi.PolyinitError, match="pattern"):
        draw_native(backend, pi.Normal(), (6, 4), layout="rows cols")


def _nested(depth):
    spec = pi.Uniform(low=0.5, high=1.0)
    for i in range(depth):
        spec = abs(spec) if i % 2 else spec * 1.0
    return spec


def test_deep_expressions_are_refused_with_the_limit():
    match = f"nested {MAX_DEPTH + 1} levels deep; polyinit supports at most {MAX_DEPTH}"
    with pytest.raises(pi.SpecError, match=match):
        _nested(350)


def test_the_deepest_allowed_expression_works_everywhere(backend):
    spec = _nested(MAX_DEPTH)
    assert pi.from_json(pi.to_json(spec)) == spec and repr(spec) and hash(spec)
    plan = pi.resolve(spec, (16,))
    assert plan.stats.low == pytest.approx(0.5) and plan.stats.high == pytest.approx(1.0)
    values = draw_native(backend, spec, (16,))
    assert np.isfinite(values).all() and values.min() >= 0.5 and values.max() <= 1.0


def test_deep_json_is_refused_without_recursion_error():
    doc = {"kind": "normal"}
    for _ in range(5000):
        doc = {"kind": "unary", "op": "neg", "operand": doc}
    with pytest.raises(pi.SerializationError, match="nested deeper"):
        pi.from_dict({"polyinit": 1, "spec": doc})
    with pytest.raises(pi.SerializationError):
        pi.from_json('{"polyinit": 1, "spec": ' + "[" * 100000 + "]" * 100000 + "}")


def test_int_as_jax_key():
    pytest.importorskip("jax")
    from polyinit.backends import jax as jax_backend

    init = jax_backend.initializer(pi.Normal())
    with pytest.raises(pi.PolyinitError, match="key must be one JAX random key.*received 0"):
        init(0, (3,))
    with pytest.raises(pi.PolyinitError, match="key"):
        jax_backend.draw(pi.resolve(pi.Normal(), (3,)), np.array([0, 0], np.uint32))
    import jax

    assert init(jax.random.PRNGKey(0), (3,)).shape == (3,)  # the raw uint32[2] form works


@pytest.mark.parametrize("shape", [(10.7, 4), (np.float64(3.0), 4), (True, 4), (-1, 4), "ab", None])
def test_float_shapes_are_refused_not_truncated(backend, shape):
    with pytest.raises(pi.ShapeError, match="shape"):
        if backend.NAME == "jax":
            import jax

            backend.initializer(pi.Normal())(jax.random.key(0), shape)
        elif backend.NAME == "keras":
            backend.Initializer(pi.Normal(), seed=0)(shape)
        else:
            pi.resolve(pi.Normal(), shape)


def test_numpy_integer_shapes_work(backend):
    values = draw_native(backend, pi.Normal(), (np.int64(3), np.int32(2)))
    assert values.shape == (3, 2)


def test_spec_comparison_has_no_truth_value():
    for expression in (pi.Normal() >= 5, pi.Normal() < 0, abs(pi.Normal()), pi.where(pi.Normal() > 0, 1.0, 0.0)):
        with pytest.raises(pi.SpecError, match="not a truth value"):
            bool(expression)
    with pytest.raises(pi.SpecError):
        if pi.Normal() >= 5:
            pass
    assert pi.Normal() == pi.Normal()  # structural equality is still a plain bool


# --- torch entry points ------------------------------------------------------------------------


def test_torch_draw_into_checks_the_target_dtype():
    torch = pytest.importorskip("torch")
    from polyinit.backends import torch as torch_backend

    plan = pi.resolve(pi.Normal(), (3,))
    with pytest.raises(pi.PolyinitError, match="torch.int32"):
        torch_backend.draw_into(torch.zeros(3, dtype=torch.int32), plan)
    with pytest.raises(pi.PolyinitError, match="resolved for float32, the tensor is torch.float16"):
        torch_backend.draw_into(torch.zeros(3, dtype=torch.float16), plan)
    with pytest.raises(pi.PolyinitError, match="expected a torch.Tensor"):
        torch_backend.init_(np.zeros(3), pi.Normal())
    with pytest.raises(pi.PolyinitError, match="generator"):
        torch_backend.init_(torch.zeros(3), pi.Normal(), generator=0)


def test_torch_framework_errors_are_wrapped_with_context():
    torch = pytest.importorskip("torch")
    from polyinit.backends import torch as torch_backend

    overlapping = torch.zeros(1, 4).expand(3, 4)  # in-place writes to shared memory: torch refuses
    with pytest.raises(pi.BackendError, match=r"torch backend: drawing normal.*shape \(3, 4\)") as info:
        torch_backend.init_(overlapping, pi.Normal(), generator=torch.Generator().manual_seed(0))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_wrong_dtypes_at_other_entry_points(backend):
    if backend.NAME == "keras":
        with pytest.raises(pi.PolyinitError, match="int32|dtype"):
            backend.Initializer(pi.Normal(), seed=0)((3,), "int32")
        with pytest.raises(pi.PolyinitError, match="dtype"):
            backend.Initializer(pi.Normal(), seed=0)((3,), "not-a-dtype")
    elif backend.NAME == "jax":
        import jax

        for dtype in ("int32", "not-a-dtype", object()):
            with pytest.raises(pi.PolyinitError, match="dtype"):
                backend.initializer(pi.Normal())(jax.random.key(0), (3,), dtype)
    elif backend.NAME == "mxnet":
        with pytest.raises(pi.PolyinitError, match="int32"):
            backend.Polyinit(pi.Normal(), seed=0)("w_weight", np.zeros(3, np.int32))
    else:
        with pytest.raises(pi.PolyinitError, match="dtype"):
            pi.resolve(pi.Normal(), (3,), dtype=np.float32)


# --- plans are immutable values, and the cache holds no large arrays ---------------------------


def test_plans_are_frozen_and_the_cache_cannot_be_corrupted():
    plan = pi.resolve(pi.Normal(std=0.5), (3, 4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.dtype = "float16"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.root.std = 2.0  # type: ignore[misc]
    again = pi.resolve(pi.Normal(std=0.5), (3, 4))
    assert again.dtype == "float32" and again.root.std == 0.5
    assert plan.stats is plan.stats  # computed once, cached on the instance
    expression = pi.resolve(abs(pi.Normal()) * 2.0, (5,))
    promise = expression.promise
    assert callable(promise) and expression.stats.mean == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-5)
    assert expression.promise is promise  # the lazy statistics never rewrite a public field


def _largest_array_reachable(obj, limit=20000):
    """The largest numpy array (bytes) reachable from ``obj`` through references."""
    seen, stack, largest = set(), [obj], 0
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            largest = max(largest, item.nbytes)
        stack.extend(gc.get_referents(item))
    return largest


@pytest.mark.parametrize(
    "spec,shape",
    [
        (pi.Identity(gain=2.0), (4096, 4096)),
        (pi.Dirac(), (512, 512, 3, 3)),
        (pi.BilinearUpsampling(), (256, 256, 16, 16)),
    ],
)
def test_deterministic_plans_hold_a_recipe_not_the_array(spec, shape):
    plan = pi.resolve(spec, shape, pi.OUT_IN)
    assert plan.stats.var > 0 and plan.describe()
    assert _largest_array_reachable(plan) < 1 << 16  # the array itself would be 128 MiB here


def test_identity_and_dirac_moments_in_closed_form():
    plan = pi.resolve(pi.Identity(gain=2.0), (3, 5))
    # 3 entries of 2.0 among 15: E[x] = 0.4, E[x^2] = 0.8.
    assert (plan.stats.mean, plan.stats.moments[1]) == pytest.approx((0.4, 0.8))
    assert np.array_equal(np.asarray(plan.stats.exact), 2.0 * np.eye(3, 5))
    dirac = pi.resolve(pi.Dirac(gain=1.0, groups=2), (6, 2, 3, 3), pi.OUT_IN)
    assert dirac.stats.mean == pytest.approx(4 / (6 * 2 * 9))  # 4 ones (see test_plan)
    assert (dirac.stats.low, dirac.stats.high) == (0.0, 1.0)
    assert pi.resolve(pi.Identity(gain=-1.0), (1, 1)).stats.low == -1.0


# --- docstrings of the new modules run -----------------------------------------------------------


@pytest.mark.parametrize("name", ["polyinit.support", "polyinit._validate", "polyinit.native"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_float64_values_too_large_for_moments_promise_no_numbers():
    for spec in (pi.Uniform(low=1e100, high=1e101), pi.Uniform(low=1e100, high=1e101) * 2.0, pi.Constant(value=1e200)):
        stats = pi.resolve(spec, (4,), dtype="float64").stats
        assert stats.moments is None and stats.var is None and math.isfinite(stats.high)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: pi.compute_fans((2.5, 3), pi.OUT_IN), "shape"),
        (lambda: pi.compute_fans((4, 3), "out in"), None),
        (lambda: pi.compute_fans((4, 3), 7), "layout"),
        (lambda: pi.preset(["torch"], "dense"), "no layout for framework"),
        (lambda: pi.backends.numpy.draw("plan", np.random.default_rng(0)), "Plan"),
        (lambda: pi.backends.numpy.draw(pi.resolve(pi.Normal(), (2,)), np.random.seed), "Generator"),
    ],
)
def test_helpers_validate_through_the_same_path(call, match):
    if match is None:
        assert call() == pi.Fans(fan_in=3, fan_out=4, receptive=1)  # a string layout works
        return
    with pytest.raises(pi.PolyinitError, match=match):
        call()
