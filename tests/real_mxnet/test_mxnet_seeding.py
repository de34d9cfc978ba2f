"""An unseeded ``Polyinit`` follows MXNet's seeding, as ``mx.init.Xavier`` does: ``mx.random.seed``
makes a Gluon initialisation reproducible, and a seeded one ignores the global stream."""

import random

import numpy as np

mx = __import__("mxnet")

import polyinit as pi  # noqa: E402
from polyinit.backends.mxnet import Polyinit  # noqa: E402


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
    assert np.array_equal(_weights(Polyinit(pi.glorot_uniform(), seed=3), 0),
                          _weights(Polyinit(pi.glorot_uniform(), seed=3), 1))


def test_unseeded_leaves_python_random_alone():
    state = random.getstate()
    _weights(Polyinit(pi.he_normal()), 0)
    assert random.getstate() == state
