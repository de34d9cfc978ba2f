"""Against the real MXNet 1.9.1 (its own venv, numpy 1.23.5): Gluon blocks, mx.init.create, and
the native twins of mx.init's initializers."""

import numpy as np
import pytest

mx = __import__("mxnet")

import polyinit as pi
from polyinit import native
from polyinit.backends.mxnet import Polyinit
from polyinit.conformance import check, failures


def net():
    block = mx.gluon.nn.HybridSequential()
    block.add(
        mx.gluon.nn.Dense(256, in_units=784),
        mx.gluon.nn.BatchNorm(in_channels=256),
        mx.gluon.nn.Conv2D(32, 3, in_channels=16),
        mx.gluon.nn.Dense(10, in_units=256),
    )
    return block


def test_gluon_initialize_with_polyinit():
    block = net()
    block.initialize(init=Polyinit(pi.glorot_uniform(), seed=0))
    params = {k: v.data().asnumpy().astype(np.float64) for k, v in block.collect_params().items()}
    for name, value in params.items():
        if name.endswith("weight"):
            plan = pi.resolve(pi.glorot_uniform(), value.shape, pi.OUT_IN)
            assert not failures(check(value, plan)), name
        elif name.endswith(("bias", "beta", "running_mean")):
            assert np.all(value == 0), name
        else:  # gamma, running_var
            assert np.all(value == 1), name


def test_create_from_dumps():
    init = Polyinit(pi.Orthogonal(gain=2.0), seed=1)
    again = mx.init.create(init.dumps())
    assert isinstance(again, Polyinit) and again.spec == init.spec


def test_parameter_level_initializer():
    dense = mx.gluon.nn.Dense(
        64, in_units=32, weight_initializer=Polyinit(pi.Orthogonal()), bias_initializer=Polyinit(pi.constant(0.5))
    )
    dense.initialize()
    w = dense.weight.data().asnumpy().astype(np.float64)
    assert not failures(check(w, pi.resolve(pi.Orthogonal(), w.shape, pi.OUT_IN)))
    assert np.all(dense.bias.data().asnumpy() == 0.5)


TWINS = [
    ("Uniform()", lambda: mx.init.Uniform(), native.mxnet_uniform()),
    ("Uniform(0.5)", lambda: mx.init.Uniform(0.5), native.mxnet_uniform(0.5)),
    ("Normal(0.2)", lambda: mx.init.Normal(0.2), native.mxnet_normal(0.2)),
    ("Xavier()", lambda: mx.init.Xavier(), native.mxnet_xavier()),
    ("Xavier(gaussian,in,2)", lambda: mx.init.Xavier("gaussian", "in", 2), native.mxnet_xavier("gaussian", "in", 2)),
    ("Xavier(uniform,out,1)", lambda: mx.init.Xavier("uniform", "out", 1), native.mxnet_xavier("uniform", "out", 1)),
    ("MSRAPrelu()", lambda: mx.init.MSRAPrelu(), native.mxnet_msra_prelu()),
    ("Constant(0.3)", lambda: mx.init.Constant(0.3), pi.constant(0.3)),
    ("Zero()", lambda: mx.init.Zero(), pi.zeros()),
    ("One()", lambda: mx.init.One(), pi.ones()),
    ("Bilinear()", lambda: mx.init.Bilinear(), pi.BilinearUpsampling()),
    ("LSTMBias(1.0)", lambda: mx.init.LSTMBias(1.0), pi.lstm_bias(1.0)),
]


@pytest.mark.parametrize("name,make,spec", TWINS, ids=[t[0] for t in TWINS])
def test_native_twin_statistics(name, make, spec):
    mx.random.seed(0)
    shape = (4, 4, 5, 5) if name == "Bilinear()" else (64,) if name.startswith("LSTMBias") else (256, 196)
    plan = pi.resolve(spec, shape, pi.OUT_IN)
    draws = []
    for _ in range(max(1, (1 << 16) // plan.size)):
        arr = mx.nd.zeros(shape)
        make()._init_weight("x_weight", arr) if not name.startswith("LSTMBias") else make()._init_weight("x_bias", arr)
        draws.append(arr.asnumpy().astype(np.float64))
    assert not failures(check(draws, plan)), [str(f) for f in failures(check(draws, plan))]
    # polyinit's compiled twin, drawn into MXNet arrays, meets the same promise.
    ours = []
    for seed in range(len(draws)):
        arr = mx.nd.zeros(shape)
        Polyinit(spec, seed=seed)("x_weight", arr)
        ours.append(arr.asnumpy().astype(np.float64))
    assert not failures(check(ours, plan))


def test_mxnet_orthogonal_is_orthogonal_but_scaled_1414():
    # MXNet's Orthogonal: SVD of a uniform matrix, default scale 1.414; orthogonality holds.
    arr = mx.nd.zeros((64, 128))
    mx.init.Orthogonal()._init_weight("x_weight", arr)
    plan = pi.resolve(pi.Orthogonal(gain=1.414), (64, 128), pi.OUT_IN)
    assert not failures([c for c in check(arr.asnumpy().astype(np.float64), plan) if "orthogonality" in c.name])


from polyinit.conformance import samples_needed
from polyinit.defaults import layer_defaults

GLUON = {
    "dense": (lambda: mx.gluon.nn.Dense(64, in_units=96), dict(n_in=96, n_out=64)),
    "conv": (
        lambda: mx.gluon.nn.Conv2D(32, 3, in_channels=16, groups=2),
        dict(n_in=16, n_out=32, kernel=(3, 3), groups=2),
    ),
    "conv_transpose": (
        lambda: mx.gluon.nn.Conv2DTranspose(32, 3, in_channels=16),
        dict(n_in=16, n_out=32, kernel=(3, 3)),
    ),
    "embedding": (lambda: mx.gluon.nn.Embedding(500, 32), dict(num=500, dim=32)),
    "lstm": (lambda: mx.gluon.rnn.LSTM(32, input_size=24), dict(n_in=24, hidden=32)),
    "gru": (lambda: mx.gluon.rnn.GRU(32, input_size=24), dict(n_in=24, hidden=32)),
    "batchnorm": (lambda: mx.gluon.nn.BatchNorm(in_channels=48), dict(c=48)),
    "layernorm": (lambda: mx.gluon.nn.LayerNorm(in_channels=48), dict(c=48)),
}


@pytest.mark.parametrize("layer", GLUON)
def test_registry_matches_real_gluon_blocks(layer):
    make, dims = GLUON[layer]
    params = layer_defaults("mxnet", layer, **dims)
    count = max(samples_needed(p.plan(), minimum=1 << 15) for p in params.values())
    builds = []
    for seed in range(min(count, 40)):
        mx.random.seed(seed)
        block = make()
        block.initialize()  # Gluon's own default: Uniform(0.07) for every weight
        # Gluon names carry a per-block counter (dense3_weight): keep the part after the prefix.
        builds.append(
            {k[len(block.prefix) :]: v.data().asnumpy().astype(np.float64) for k, v in block.collect_params().items()}
        )
    assert len(builds[0]) == len(params), sorted(builds[0])
    for name, param in params.items():
        assert name in builds[0], (name, sorted(builds[0]))
        draws = [b[name] for b in builds]
        assert draws[0].shape == param.shape
        assert not failures(check(draws, param.plan())), [str(f) for f in failures(check(draws, param.plan()))]


from polyinit import rules as R


def test_rules_on_a_real_gluon_block():
    block = net()
    block.initialize()
    before = {k: v.data().asnumpy().copy() for k, v in block.collect_params().items()}
    with pytest.raises(R.RuleError, match="wieght"):
        R.apply(block, R.Rules([(R.name("*wieght"), pi.zeros())]))
    assert all(np.array_equal(before[k], v.data().asnumpy()) for k, v in block.collect_params().items())
    report = R.apply(
        block,
        R.Rules(
            [
                (R.kind("dense") & R.first() & R.role("weight"), pi.glorot_uniform()),
                (R.role("weight"), pi.he_normal()),
                (R.role("bias"), pi.zeros()),
                (R.kind("norm"), R.KEEP),
            ],
            require_all=True,
        ),
    )
    assert {r.path for r in report.rows} == set(block.collect_params().keys())
    first = block.collect_params()[report.rows[0].path].data().asnumpy().astype(np.float64)
    assert not failures(check(first, pi.resolve(pi.glorot_uniform(), first.shape, pi.OUT_IN)))


def test_compare_measures_real_gluon():
    from polyinit.compare import compare

    (row,) = compare(frameworks=["mxnet"], depth=4, cache=False)
    assert row.source == "measured on real layers"
    assert np.allclose(row.measured_linear, row.linear, rtol=0.1)
