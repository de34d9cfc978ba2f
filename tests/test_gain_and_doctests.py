"""The gain table equals torch's (written out here), and every public docstring example runs."""

import doctest
import importlib
import math

import pytest

import polyinit as pi


@pytest.mark.parametrize(
    "name,param,expected",
    [
        ("linear", None, 1.0),
        ("conv1d", None, 1.0),
        ("conv2d", None, 1.0),
        ("conv3d", None, 1.0),
        ("conv_transpose2d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5.0 / 3),
        ("relu", None, math.sqrt(2.0)),
        ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
        ("leaky_relu", 1, 1.0),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain(name, param, expected):
    assert pi.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


MODULES = [
    "polyinit",
    "polyinit.spec",
    "polyinit.schemes",
    "polyinit.layout",
    "polyinit.gain",
    "polyinit.plan",
    "polyinit.serialize",
    "polyinit.backends",
    "polyinit.backends.numpy",
    "polyinit.conformance",
    "polyinit.conformance.checks",
    "polyinit.conformance.runner",
    "polyinit.frameworks.torch",
    "polyinit.frameworks._walk",
    "polyinit.portable",
    "polyinit.logical",
    "polyinit.writing",
    "polyinit._validate",
    "polyinit.modern._args",
    "polyinit.modern.deepnet",
    "polyinit.native_logs",
    "polyinit.params",
    "polyinit.identity",
    "polyinit.transfer_pairing",
    "polyinit.transfer_values",
    "polyinit.frameworks.keras",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
