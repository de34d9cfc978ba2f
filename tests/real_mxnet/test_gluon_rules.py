"""Rules on real Gluon blocks, read from the block tree: model_zoo resnet18_v1 after a forward
pass, name_scope blocks, deferred shapes refused, the same weights when built twice, and an LSTM's
logical records and per-gate semantic fans, the same as in torch, Keras, nnx and linen."""

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
from mxnet.gluon import nn

import polyinit as pi
from polyinit import rules as R
from polyinit.conformance import check, failures

README_RULES = R.Rules(
    [
        (R.kind("dense") & R.first() & R.role("weight"), pi.glorot_uniform()),  # the first dense layer
        (R.role("weight", "embedding"), pi.he_normal()),
        (R.role("bias"), pi.zeros()),
        (R.kind("norm"), R.KEEP),
    ],
    seed=0,
    require_all=True,
)


def resnet18():
    net = mx.gluon.model_zoo.vision.resnet18_v1(pretrained=False, classes=10)
    net.initialize()
    net(mx.nd.ones((1, 3, 32, 32)))  # a forward pass: shapes known, oneDNN layouts in place
    mx.nd.waitall()  # MXNet is asynchronous: reading a weight while oneDNN reorders it races
    return net


def values(net):
    mx.nd.waitall()
    return {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()}


def test_resnet18_readme_rules_after_a_forward_pass():
    net = resnet18()
    report = R.apply(net, README_RULES)
    assert sorted(r.path for r in report.rows) == sorted(net.collect_params().keys())
    assert {r.kind for r in report.rows} == {"conv", "norm", "dense"}
    (head,) = [r for r in report.rows if r.rule_index == 0]
    assert head.path.endswith("dense0_weight") and head.shape == (10, 512)
    params = net.collect_params()
    for row in report.rows:
        if row.plan is not None and row.plan.size >= 64:
            array = params[row.path].data().asnumpy().astype(np.float64)
            plan = pi.resolve(README_RULES.rules[row.rule_index][1], row.shape, pi.OUT_IN)
            assert not failures(check(array, plan, alpha=1e-7)), row.path
    net(mx.nd.ones((1, 3, 32, 32))).wait_to_read()  # still runs


def test_resnet18_typo_is_bit_identical_and_rebuilds_give_the_same_weights():
    net = resnet18()
    before = values(net)
    with pytest.raises(R.RuleError, match="wieght"):
        R.apply(net, R.Rules([(R.role("bias"), pi.zeros()), (R.name("*wieght"), pi.zeros())]))
    assert all(np.array_equal(before[k], v) for k, v in values(net).items())
    again = resnet18()
    assert list(again.collect_params().keys()) != list(net.collect_params().keys())  # resnetv10_ then resnetv11_
    R.apply(net, README_RULES), R.apply(again, README_RULES)
    assert all(np.array_equal(a, b) for a, b in zip(values(net).values(), values(again).values()))


def test_name_scope_blocks_get_kinds_from_their_types():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(5, in_units=4 * 6 * 6))
    net.initialize()
    records = [(p.layer, p.kind, p.role, p.shape) for p in R.select(net, R.every())]
    assert records == [
        (0, "conv", "weight", (4, 3, 3, 3)),
        (0, "conv", "bias", (4,)),
        (1, "norm", "scale", (4,)),
        (1, "norm", "offset", (4,)),
        (1, "norm", "running_mean", (4,)),
        (1, "norm", "running_var", (4,)),
        (2, "dense", "weight", (5, 144)),
        (2, "dense", "bias", (5,)),
    ]


def test_deferred_parameters_are_refused_by_name_before_any_write():
    net = nn.HybridSequential()
    net.add(nn.Dense(8, in_units=4), nn.Dense(3))  # the second's input size is deferred
    net.initialize()
    before = net[0].weight.data().asnumpy().copy()
    with pytest.raises(R.ModelError, match=r"\['\w*dense\d+_weight'\] have deferred shapes"):
        R.apply(net, R.Rules([(R.every(), pi.ones())]))
    assert np.array_equal(before, net[0].weight.data().asnumpy())
    net(mx.nd.ones((2, 4)))
    report = R.apply(net, R.Rules([(R.every(), pi.ones())]))
    assert len(report.rows) == 4 and np.all(net[1].weight.data().asnumpy() == 1)


def test_semantic_fans_for_grouped_and_transposed_convs():
    conv = nn.Conv2D(8, 3, in_channels=8, groups=4)
    deconv = nn.Conv2DTranspose(6, 3, in_channels=4)
    for block in (conv, deconv):
        block.initialize()
    rules = R.Rules([(R.role("weight"), pi.he_normal()), (R.role("bias"), pi.zeros())])
    grouped = R.apply(conv, rules, fans="semantic").rows[0]
    assert (grouped.fan_in, grouped.fan_out) == (2 * 9, 2 * 9)  # each group: 2 in, 2 out channels
    native = R.apply(deconv, rules).rows[0]
    semantic = R.apply(deconv, rules, fans="semantic").rows[0]
    # weight (in=4, out=6, 3, 3): native reads axis 1 as in (fan_in 54), the data flow gives 4 * 9.
    assert native.fan_in == 54 and semantic.fan_in == 36


# One LSTM layer (input 6, hidden 8) and a dense head (8 -> 3), read off the architecture: the
# 4 gates (i, f, c, o) of the input weight (4, H, in), of the recurrent weight (4, H, H) and of
# the effective bias i2h_bias + h2h_bias (4, H), then the head; shapes in (batch, out, in) order.
# The same list as LSTM_RECORDS in tests/test_rules_contract.py (torch, Keras, nnx, linen).
LSTM_RECORDS = [
    (0, "recurrent", "weight", (4, 8, 6)),
    (0, "recurrent", "recurrent", (4, 8, 8)),
    (0, "recurrent", "bias", (4, 8)),
    (1, "dense", "weight", (3, 8)),
    (1, "dense", "bias", (3,)),
]


def _logical_records(model, grouped=True):
    from polyinit.frameworks import walker_for
    from polyinit.params import logical_params

    params = walker_for(model).walk(model)
    views = logical_params(params) if grouped else params
    out = []
    for p in views:
        shape, layout = (p.shape, p.layout) if grouped else (p.logical_shape, p.semantic_layout)
        roles = layout.roles(len(shape))
        dims = tuple(n for order in ("batch", "out", "in", "spatial") for n, r in zip(shape, roles) if r == order)
        out.append((p.layer, p.kind, p.role, dims))
    return out


def _gluon_lstm():
    from mxnet.gluon import rnn

    net = nn.HybridSequential()
    net.add(rnn.LSTM(8, input_size=6, layout="NTC"), nn.Dense(3, in_units=8, flatten=False))
    net.initialize()
    return net


def test_gluon_lstm_gives_the_logical_records_of_every_framework():
    net = _gluon_lstm()
    assert _logical_records(net) == LSTM_RECORDS
    # Per tensor, the two biases are two records: the comparison can fail.
    assert len(_logical_records(net, grouped=False)) == 6 and _logical_records(net, grouped=False) != LSTM_RECORDS
    # The same from a name -> array dict of the same weights (kinds from the names).
    arrays = {k: v.data().asnumpy() for k, v in net.collect_params().items()}
    assert _logical_records(arrays)[:3] == LSTM_RECORDS[:3]


def test_gluon_lstm_semantic_fans_are_per_gate():
    net = _gluon_lstm()
    rules = R.Rules([(R.kind("recurrent") & R.role("weight", "recurrent"), pi.glorot_uniform()), (R.every(), R.KEEP)])
    semantic = {(r.role, r.fan_in, r.fan_out) for r in R.apply(net, rules, fans="semantic").rows if r.rule_index == 0}
    native = {(r.role, r.fan_in, r.fan_out) for r in R.apply(net, rules).rows if r.rule_index == 0}
    assert semantic == {("weight", 6, 8), ("recurrent", 8, 8)}
    assert native == {("weight", 6, 32), ("recurrent", 8, 32)}
    net(mx.nd.ones((2, 5, 6))).wait_to_read()  # still runs


def _hybrid_sequential_arrays(scoped: bool) -> dict:
    def layers():
        return nn.Conv2D(4, 3, in_channels=2), nn.Conv2D(4, 3, in_channels=4), nn.Dense(3, in_units=5)

    net = nn.HybridSequential()
    if scoped:
        with net.name_scope():
            net.add(*layers())
    else:
        net.add(*layers())
    net.initialize()
    return {k: v.data().asnumpy() for k, v in net.collect_params().items()}


@pytest.mark.parametrize("scoped", [True, False])
def test_name_array_dict_seeds_ignore_gluon_counters(scoped):
    """The same HybridSequential built twice in one process: its collect_params() names differ
    (hybridsequential0_conv0_ then hybridsequential1_conv0_, or conv0_ then conv2_ without a
    name_scope), and its name -> array dict still draws the same values; the two convs of one net
    stay distinct, and each layer's kind comes from its own name, not its parent's."""
    first, second = _hybrid_sequential_arrays(scoped), _hybrid_sequential_arrays(scoped)
    assert list(first) != list(second)
    rules = R.Rules(
        [
            (R.kind("conv") & R.role("weight"), pi.he_normal()),
            (R.kind("dense") & R.role("weight"), pi.glorot_uniform()),
            (R.role("bias"), pi.Normal(std=0.1)),
        ],
        seed=4,
    )
    R.apply(first, rules), R.apply(second, rules)
    a, b = list(first.values()), list(second.values())
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0].ravel()[:36], a[2].ravel()[:36])  # conv0 and conv1: different seeds
