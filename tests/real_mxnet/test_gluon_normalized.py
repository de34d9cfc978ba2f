"""Normalized (nGPT's projection) on real Gluon blocks: MXNet's Dense stores (out, in) like torch,
so axis "in" gives each output unit's weight vector norm 1; the portable draw is the numpy
reference's, bit for bit."""

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
from mxnet.gluon import nn

import polyinit as pi
from polyinit.backends import mxnet as backend
from polyinit.backends.numpy import draw_portable

SPEC = pi.normalized(pi.TruncatedNormal(std=0.0625, low=-3.0, high=3.0, bounds="std"), axis="in")


def test_dense_rows_are_unit_vectors():
    net = nn.Dense(64, in_units=256)
    net.initialize(backend.Polyinit(SPEC, seed=3))
    w = net.weight.data().asnumpy().astype(np.float64)
    assert w.shape == (64, 256)
    assert np.max(np.abs(np.linalg.norm(w, axis=1) - 1.0)) <= 64 * 2.0**-24
    # The columns are not: 64 unit rows spread over 256 columns give column norms near 1/2.
    assert np.max(np.linalg.norm(w, axis=0)) < 0.9


def test_portable_draw_is_the_reference_bits():
    plan = pi.resolve(SPEC, (64, 256), pi.OUT_IN)
    ours, reference = backend.draw_portable(plan, 5, "w"), draw_portable(plan, 5, "w")
    assert int(np.sum(ours.view(np.uint32) != reference.view(np.uint32))) == 0
