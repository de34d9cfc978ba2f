"""The MXNet-protocol initializer on numpy arrays (the real Gluon is tested in tests/real_mxnet)."""

import json

import numpy as np
import pytest

import polyinit as pi
from polyinit.backends.mxnet import Polyinit


@pytest.mark.parametrize(
    "name,expected",
    [
        ("dense0_bias", 0.0),
        ("bn_gamma", 1.0),
        ("bn_beta", 0.0),
        ("bn_moving_mean", 0.0),
        ("bn_moving_var", 1.0),
        ("bn_moving_inv_var", 0.0),
        ("q_min", 0.0),
        ("q_max", 1.0),
    ],
)
def test_suffix_dispatch_constants(name, expected):
    arr = np.full((7,), 5.0, np.float32)
    Polyinit(pi.glorot_uniform(), seed=0)(name, arr)
    assert np.all(arr == expected)


def test_weight_gets_the_spec_in_out_in_layout():
    arr = np.empty((10, 40), np.float32)
    Polyinit(pi.glorot_uniform(), seed=0)("fc_weight", arr)
    assert np.abs(arr).max() <= np.sqrt(6 / 50) and arr.std() > 0


def test_unknown_suffix_is_an_error_naming_the_parameter():
    with pytest.raises(pi.PolyinitError, match="'embedding_table'"):
        Polyinit(pi.zeros())("embedding_table", np.empty(3, np.float32))


def test_shape_error_names_the_parameter():
    with pytest.raises(pi.ShapeError, match="'fc_weight'"):
        Polyinit(pi.he_uniform())("fc_weight", np.empty(3, np.float32))


def test_dumps_is_mxnet_json():
    init = Polyinit(pi.glorot_uniform(), seed=3)
    name, kwargs = json.loads(init.dumps())
    assert name == "polyinit" and kwargs["seed"] == 3
    assert pi.from_dict(kwargs["spec"]) == pi.glorot_uniform()
    assert Polyinit(**kwargs).spec == init.spec


def test_seeded_objects_repeat():
    a, b = np.empty((5, 5), np.float32), np.empty((5, 5), np.float32)
    Polyinit(pi.Normal(), seed=1)("w_weight", a)
    Polyinit(pi.Normal(), seed=1)("w_weight", b)
    assert np.array_equal(a, b)
