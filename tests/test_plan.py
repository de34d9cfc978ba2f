"""The plan's numbers against the formulas, recomputed here independently (as torch's test_init does)."""

import math

import numpy as np
import pytest
from formulas import keras_fans, torch_fans

import polyinit as pi
from polyinit import nodes

TRUNC_STD_2 = 0.87962566103423978  # std of N(0,1) cut to (-2, 2), the constant Keras/JAX/timm hard-code


# (case id, shape, layout, fan_in, fan_out), fans from the frameworks' own rules or by hand.
CASES = [
    ("dense_out_in", (256, 784), pi.OUT_IN, *torch_fans((256, 784))),
    ("dense_in_out", (784, 256), pi.IN_OUT, *keras_fans((784, 256))),
    ("conv1d", (32, 16, 5), pi.OUT_IN, *torch_fans((32, 16, 5))),
    ("conv2d", (3, 3, 16, 32), pi.IN_OUT, *keras_fans((3, 3, 16, 32))),
    ("conv3d", (8, 4, 3, 3, 3), pi.OUT_IN, *torch_fans((8, 4, 3, 3, 3))),
    ("grouped", (32, 4, 3, 3), pi.preset("torch", "conv"), 4 * 9, 32 * 9),
    ("depthwise", (3, 3, 16, 2), pi.preset("keras", "depthwise_conv", native=False), 9, 18),
    ("transposed", (16, 32, 3, 3), pi.preset("torch", "conv_transpose", native=False), 16 * 9, 32 * 9),
    ("attention", (512, 8, 64), pi.Layout("in out out"), 512, 512),
    ("embedding", (1000, 64), pi.preset("keras", "embedding"), 1000, 64),
]
IDS = [c[0] for c in CASES]


def gain(nonlinearity, a):
    return {
        "relu": math.sqrt(2),
        "tanh": 5 / 3,
        "linear": 1.0,
        "selu": 0.75,
        "leaky_relu": math.sqrt(2 / (1 + (0.01 if a is None else a) ** 2)),
    }[nonlinearity]


def leaf(plan):
    assert isinstance(plan.root, (nodes.Uniform, nodes.Normal, nodes.TruncatedNormal))
    return plan.root


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("g", [1.0, 0.5, 5 / 3])
def test_glorot_uniform(case, g):
    _, shape, layout, fi, fo = case
    plan = pi.resolve(pi.glorot_uniform(gain=g), shape, layout)
    bound = g * math.sqrt(6 / (fi + fo))
    assert (plan.fans.fan_in, plan.fans.fan_out) == (fi, fo)
    assert leaf(plan).low == pytest.approx(-bound, rel=1e-12) and leaf(plan).high == pytest.approx(bound, rel=1e-12)
    assert plan.stats.var == pytest.approx(g * g * 2 / (fi + fo), rel=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("truncated", [False, True])
def test_glorot_normal(case, truncated):
    _, shape, layout, fi, fo = case
    plan = pi.resolve(pi.glorot_normal(gain=2.0, truncated=truncated), shape, layout)
    std = 2.0 * math.sqrt(2 / (fi + fo))
    node = leaf(plan)
    if truncated:
        assert isinstance(node, nodes.TruncatedNormal) and (node.a, node.b) == (-2.0, 2.0)
        assert node.std == pytest.approx(std / TRUNC_STD_2, rel=1e-12)
    else:
        assert isinstance(node, nodes.Normal) and node.std == pytest.approx(std, rel=1e-12)
    assert plan.stats.std == pytest.approx(std, rel=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(
    "nonlinearity,a",
    [("leaky_relu", 0.0), ("leaky_relu", math.sqrt(5)), ("leaky_relu", None), ("relu", None), ("tanh", None)],
)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_he_uniform_and_normal(case, nonlinearity, a, mode):
    _, shape, layout, fi, fo = case
    fan = fi if mode == "fan_in" else fo
    g = gain(nonlinearity, a)
    uniform = leaf(pi.resolve(pi.he_uniform(a=a, mode=mode, nonlinearity=nonlinearity), shape, layout))
    assert uniform.high == pytest.approx(math.sqrt(3.0) * g / math.sqrt(fan), rel=1e-12)
    assert uniform.low == -uniform.high
    normal = leaf(pi.resolve(pi.he_normal(a=a, mode=mode, nonlinearity=nonlinearity), shape, layout))
    assert normal.std == pytest.approx(g / math.sqrt(fan), rel=1e-12)


def test_torch_linear_default_is_one_over_sqrt_fan_in():
    plan = pi.resolve(pi.he_uniform(a=math.sqrt(5)), (256, 784), pi.OUT_IN)
    assert leaf(plan).high == pytest.approx(1 / math.sqrt(784), rel=1e-12)
    assert plan.describe() == "uniform(-0.03571, 0.03571)"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lecun(case):
    _, shape, layout, fi, _ = case
    assert leaf(pi.resolve(pi.lecun_uniform(), shape, layout)).high == pytest.approx(math.sqrt(3 / fi), rel=1e-12)
    assert leaf(pi.resolve(pi.lecun_normal(), shape, layout)).std == pytest.approx(1 / math.sqrt(fi), rel=1e-12)
    trunc = pi.resolve(pi.lecun_normal(truncated=True), shape, layout)
    assert trunc.stats.high == pytest.approx(2 / TRUNC_STD_2 / math.sqrt(fi), rel=1e-10)  # 2.2737 / sqrt(fi)


@pytest.mark.parametrize("mode,expected", [("fan_avg", 2 / (784 + 256)), ("fan_geo_avg", 1 / math.sqrt(784 * 256))])
def test_variance_scaling_modes(mode, expected):
    plan = pi.resolve(pi.VarianceScaling(scale=1.0, mode=mode, distribution="normal"), (256, 784), pi.OUT_IN)
    assert plan.stats.var == pytest.approx(expected, rel=1e-12)


def test_truncated_normal_constants():
    # Values from FRAMEWORKS.md section 6.2: std 0.8796256610342398, var 0.7737413035, excess kurtosis -0.63446.
    plan = pi.resolve(pi.TruncatedNormal(std=1.0, bounds="std"), (10,))
    assert plan.stats.std == pytest.approx(TRUNC_STD_2, rel=1e-12)
    assert plan.stats.var == pytest.approx(0.7737413035, rel=1e-9)
    assert plan.stats.excess_kurtosis == pytest.approx(-0.63446, abs=1e-5)


def test_truncated_normal_absolute_bounds_are_values():
    # torch trunc_normal_(std=0.02) with a=-2, b=2: the cut is at +-100 sigma, so no truncation to speak of.
    plan = pi.resolve(pi.TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute"), (10,))
    assert (plan.root.a, plan.root.b) == pytest.approx((-100.0, 100.0))
    assert plan.stats.std == pytest.approx(0.02, rel=1e-12)


def test_truncated_normal_preserve_std():
    plan = pi.resolve(pi.TruncatedNormal(std=0.1, bounds="std", preserve_std=True), (10,))
    assert plan.stats.std == pytest.approx(0.1, rel=1e-12)
    assert plan.root.std == pytest.approx(0.1 / TRUNC_STD_2, rel=1e-12)


def test_uniform_and_normal_moments():
    uniform = pi.resolve(pi.Uniform(low=-3.0, high=1.0), (5,)).stats
    assert (uniform.mean, uniform.var, uniform.excess_kurtosis) == pytest.approx((-1.0, 16 / 12, -1.2))
    normal = pi.resolve(pi.Normal(mean=1.0, std=2.0), (5,)).stats
    assert (normal.mean, normal.var, normal.excess_kurtosis) == pytest.approx((1.0, 4.0, 0.0), abs=1e-12)


def test_orthogonal_plan_flattens_like_torch_and_keras():
    torch_plan = pi.resolve(pi.Orthogonal(gain=2.0), (32, 16, 3, 3), pi.OUT_IN)
    assert torch_plan.leaves[0].shape == (32, 16 * 9)
    keras_plan = pi.resolve(pi.Orthogonal(gain=2.0), (3, 3, 16, 32), pi.IN_OUT)
    assert keras_plan.leaves[0].shape == (32, 3 * 3 * 16)
    assert torch_plan.stats.var == pytest.approx(4.0 / 144)


def test_sparse_zero_fraction():
    plan = pi.resolve(pi.Sparse(sparsity=0.1, std=0.02), (25, 7), pi.OUT_IN)
    assert plan.stats.zero_fraction == pytest.approx(3 / 25)  # ceil(0.1 * 25) = 3 per column
    assert plan.stats.var == pytest.approx((1 - 3 / 25) * 0.02**2)


def test_dirac_matches_torch_definition():
    plan = pi.resolve(pi.Dirac(gain=1.0, groups=2), (6, 2, 3, 3), pi.OUT_IN)
    values = np.asarray(plan.stats.exact)
    ones = sorted(zip(*[list(map(int, ix)) for ix in values.nonzero()]))
    # groups=2, out/groups=3, in=2: d < min(3, 2) = 2 per group, centre 3//2 = 1.
    assert ones == [(0, 0, 1, 1), (1, 1, 1, 1), (3, 0, 1, 1), (4, 1, 1, 1)]


def test_delta_orthogonal_centre_is_k_minus_1_over_2():
    plan = pi.resolve(pi.DeltaOrthogonal(), (4, 4, 3, 5), pi.IN_OUT)
    assert plan.root.index == ((4 - 1) // 2, (4 - 1) // 2, None, None)


def test_bilinear_matches_mxnet_formula():
    values = np.asarray(pi.resolve(pi.BilinearUpsampling(), (1, 1, 4, 4), pi.OUT_IN).stats.exact)
    # MXNet: f = ceil(4/2) = 2, c = (2*2 - 1 - 0) / 4 = 0.75; 1-D profile [0.25, 0.75, 0.75, 0.25].
    profile = [0.25, 0.75, 0.75, 0.25]
    for y in range(4):
        for x in range(4):
            assert values[0, 0, y, x] == pytest.approx(profile[y] * profile[x])


def test_lstm_bias_blocks_in_gate_order():
    plan = pi.resolve(pi.lstm_bias(forget_bias=1.0), (8,))
    assert [c.value for c in plan.root.children] == [0.0, 1.0, 0.0, 0.0]
    assert plan.stats.mean == pytest.approx(0.25)


def test_blocks_along_out_follow_the_packed_axis_of_a_gate_view():
    """An LSTM's (4H, in) weight seen as (4, H, in) 'batch out in' (fans='semantic'), or in the
    portable order (H, in, 4) 'out in batch': lstm_kernel's four blocks are the four gates, the
    same elements as on the stored tensor, each with per-gate fans."""
    kernel = pi.lstm_kernel(i=pi.zeros(), f=pi.ones(), g=pi.zeros(), o=pi.glorot_uniform())
    for shape, layout, axis in [((4, 3, 5), "batch out in", 0), ((3, 5, 4), "out in batch", 2)]:
        plan = pi.resolve(kernel, shape, pi.Layout(layout))
        assert plan.root.axis == axis and plan.root.children[1].shape == shape[:axis] + (1,) + shape[axis + 1 :]
        bound = plan.root.children[3].high
        assert bound == pytest.approx(math.sqrt(6 / (5 + 3)))  # fan_in 5, fan_out H = 3
    with pytest.raises(pi.ShapeError, match="not divisible into 3 blocks"):
        pi.resolve(pi.Blocks(axis="out", parts=(pi.zeros(),) * 3), (4, 3, 5), pi.Layout("batch out in"))
    # 'in' is never packed with the blocks: unchanged.
    assert (
        pi.resolve(pi.Blocks(axis="in", parts=(pi.zeros(),) * 5), (4, 3, 5), pi.Layout("batch out in")).root.axis == 2
    )


def test_zero_size_resolves_to_empty_for_any_scheme():
    plan = pi.resolve(pi.glorot_uniform(), (0, 784), pi.OUT_IN)
    assert plan.size == 0 and plan.leaves == () and plan.describe() == "empty (no elements)"


def test_schemes_without_fans_work_on_rank_0_and_1():
    assert pi.resolve(pi.Normal(std=0.1), ()).stats.std == pytest.approx(0.1)
    assert pi.resolve(pi.zeros(), (7,)).stats.high == 0.0


def test_fan_schemes_refuse_rank_1():
    with pytest.raises(pi.ShapeError, match="fans"):
        pi.resolve(pi.he_uniform(), (16,), pi.OUT_IN)
