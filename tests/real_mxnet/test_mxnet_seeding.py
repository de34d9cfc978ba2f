"""An unseeded ``Polyinit`` follows MXNet's seeding, as ``mx.init.Xavier`` does: ``mx.random.seed``
makes a Gluon initialisation reproducible, and a seeded one ignores the global stream."""

import random

import numpy as np
import pytest

mx = __import__("mxnet")

import polyinit as pi
from polyinit.backends.mxnet import Polyinit


def _weights(init, global_seed):
    mx.random.seed(global_seed)
    block = mx.gluon.nn.Dense(64, in_units=32)
    block.initialize(init=init)
    return block.weight.data().asnumpy()


def test_unseeded_follows_mx_random_seed():
    first = _weights(Polyinit(pi.glorot_uniform()), 0)
    random.seed(12345)  # Python's generator has no say any more
    assert np.array_equal(first, _weights(Polyinit(pi.glorot_uniform()), 0))
    assert not np.array_equal(first, _weights(Polyinit(pi.glorot_uniform()), 1))
    # Same behaviour as MXNet's own initializer, for reference.
    assert np.array_equal(_weights(mx.init.Xavier(), 0), _weights(mx.init.Xavier(), 0))


def test_seeded_ignores_the_global_stream():
    assert np.array_equal(
        _weights(Polyinit(pi.glorot_uniform(), seed=3), 0), _weights(Polyinit(pi.glorot_uniform(), seed=3), 1)
    )


def test_unseeded_leaves_python_random_alone():
    state = random.getstate()
    _weights(Polyinit(pi.he_normal()), 0)
    assert random.getstate() == state


from polyinit import propagation as pg
from polyinit.compare import compare


@pytest.mark.parametrize("kind", pg.kinds_of("mxnet"))
def test_compare_every_gluon_layer_kind(kind):
    """Closed form against Gluon's real layers, each kind with one of the activations in turn:
    mean of 4 networks of width 128 (conv2d/3d: 32 channels), depth 3, within 20%."""
    activation = pg.ACTIVATIONS[pg.KINDS.index(kind) % len(pg.ACTIVATIONS)]
    width = 32 if kind in ("conv2d", "conv3d", "conv_transpose") else 128
    (row,) = compare(
        kind,
        n_in=1000 if kind == "embedding" else width,
        n_out=width,
        depth=3,
        frameworks=["mxnet"],
        activation=activation,
        cache=False,
    )
    assert row.source == "measured on real layers"
    assert np.allclose(row.measured_linear, row.linear, rtol=0.2, atol=0), (row.measured_linear, row.linear)
    assert np.allclose(row.measured_activated, row.activated, rtol=0.2, atol=0), (row.measured_activated, row.activated)
