"""Every per-framework table of defaults, compare and plot comes from the framework records
(issue 15, point 1): a toy framework added as one record, from this test and touching no polyinit
module, has layer defaults, a compare row, cross-application rules and a colour."""

from __future__ import annotations

import math

import pytest

import polyinit as pi
from polyinit import defaults
from polyinit import frameworks as F
from polyinit.compare import compare
from polyinit.propagation import KINDS


def _toy_defaults(layer: str, d: dict) -> dict:
    if layer != "dense":
        raise KeyError(layer)
    return {
        "w": defaults.Param(pi.Normal(std=0.1), pi.IN_OUT, (d["n_in"], d["n_out"])),
        "b": defaults.Param(pi.zeros(), pi.OUT_IN, (d["n_out"],)),
    }


@pytest.fixture()
def toy(monkeypatch):
    F.frameworks()  # the shipped records are loaded first
    record = F.Framework(
        name="toyfw",
        display="Toy",
        detect=lambda model: False,
        walker=object,
        priority=98,
        defaults=_toy_defaults,
        cross_rules=lambda weights, biases: [(weights, pi.Normal(std=0.1)), (biases, pi.zeros())],
        version="0.1",
        colour="#123456",
        style=":",
        distribution="toyfw",
        missing_layers=tuple(k for k in KINDS if k != "dense"),
    )
    monkeypatch.setitem(F._FRAMEWORKS, "toyfw", record)
    return record


def test_a_framework_added_as_one_record_is_in_every_table(toy):
    assert defaults.FRAMEWORKS[-2:] == ("toyfw", "haiku") and defaults.VERSIONS["toyfw"] == "0.1"
    assert defaults.layer_defaults("toyfw", "dense", n_in=4, n_out=3)["w"].shape == (4, 3)
    torch_row, toy_row = compare(
        layer="dense", n_in=400, n_out=400, depth=3, frameworks=("torch", "toyfw"), measure=False
    )
    assert toy_row.version == "0.1" and toy_row.weight.std == pytest.approx(0.1)
    assert toy_row.gain == pytest.approx(400 * 0.01)  # fan_in var(w)
    assert toy_row.linear[-1] == pytest.approx(4.0**3)
    assert math.isnan(compare(layer="lstm", frameworks=("toyfw",), measure=False)[0].gain)  # no lstm default
    assert compare(layer="dense", frameworks=("toyfw",))[0].source.startswith("closed form")  # no measurer
    rules = defaults.rules_for("toyfw")
    assert repr(rules.rules[0][1]) == repr(pi.Normal(std=0.1))
    from polyinit.plot import _look

    assert _look("toyfw") == ("#123456", ":")


def test_the_shipped_records_carry_what_compare_needs():
    described = [f for f in F.frameworks() if f.defaults is not None]
    assert [f.name for f in described] == ["torch", "keras", "flax", "mxnet", "equinox", "haiku"]
    for record in described:
        assert record.version and record.distribution and record.measurer and record.module, record.name
        assert record.recurrent_names, record.name
    from polyinit.backends import REGISTRY

    assert all(f.backend in REGISTRY for f in F.frameworks()), [(f.name, f.backend) for f in F.frameworks()]
    assert [f.name for f in F.frameworks() if f.preset_twins] == ["torch", "keras", "flax"]
