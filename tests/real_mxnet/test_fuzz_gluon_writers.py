"""The Gluon half of the writers' fuzz (issue 22; the rest is tests/test_fuzz_writers.py): ``apply``,
native and portable, on real Gluon blocks (a small transformer-like block, a CNN, an LSTM) and on
their name -> array dicts, with rules and arguments built from hostile pieces. Each attempt ends
in a ``PolyinitError`` with every parameter bit-identical, or in finite values with the parameters
the report leaves undrawn unchanged. Deterministic and bounded."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

mx = pytest.importorskip("mxnet")
from mxnet.gluon import nn, rnn

import polyinit as pi
from polyinit.errors import PolyinitError
from polyinit.rules import KEEP, Rules, SpecFactory, apply, every, first, kind, last, name, role

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def mostly(good, hostile):
    """One of ``good``, else (about one time in five) one of ``hostile``."""
    return st.integers(0, 9).flatmap(lambda i: st.sampled_from(hostile if i in (3, 6) else good))


def _raising_factory(param, layer):
    raise ArithmeticError("user factory broke")


SELECTORS = mostly(
    [
        role("weight"),
        role("bias"),
        kind("dense"),
        kind("conv"),
        kind("norm"),
        kind("recurrent"),
        every(),
        first(),
        last(),
        ~role("bias"),
    ],
    [name("*no_such_layer*")],
)
ACTIONS = mostly(
    [
        lambda: pi.he_normal(),
        lambda: pi.glorot_uniform(),
        lambda: pi.zeros(),
        lambda: pi.Normal(std=0.02),
        lambda: KEEP,
        lambda: pi.he_normal() * pi.Uniform(low=0.5, high=1.5),
    ],
    [
        lambda: pi.Normal(std=1e30),
        lambda: pi.Constant(value=1e39),
        lambda: pi.Orthogonal(),
        lambda: SpecFactory(_raising_factory, "raising"),
        lambda: pi.Uniform(low=-1e38, high=1e38),
    ],
)
SEEDS = mostly([0, 7, 2**64 - 1], [-1, 2**64, True])
KEYS = mostly([None], [lambda p: "same key", lambda p: 1 / 0])
FANS = mostly([None, "native", "semantic"], ["logical"])
PORTABLE = mostly([False, True], [1])


@st.composite
def rule_recipes(draw):
    pairs = [(draw(SELECTORS), draw(ACTIONS)) for _ in range(draw(st.integers(1, 4)))]
    seed, key, strict = draw(SEEDS), draw(KEYS), draw(mostly([False], [True]))
    return lambda: Rules([(selector, action()) for selector, action in pairs], seed=seed, key=key, strict=strict)


def blocks() -> dict:
    transformer = nn.HybridSequential()
    transformer.add(
        nn.Embedding(20, 8),
        nn.LayerNorm(in_channels=8),
        nn.Dense(32, in_units=8, flatten=False),
        nn.Dense(8, in_units=32, flatten=False),
    )
    cnn = nn.HybridSequential()
    cnn.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(5, in_units=4 * 4 * 4))
    lstm = nn.HybridSequential()
    lstm.add(rnn.LSTM(5, input_size=6, layout="NTC"), nn.Dense(3, in_units=5, flatten=False))
    models = {"transformer": transformer, "cnn": cnn, "lstm": lstm}
    for block in models.values():
        block.initialize()
    models["cnn dict"] = {k: v.data().asnumpy() for k, v in cnn.collect_params().items()}
    return models


@pytest.fixture(scope="module")
def zoo():
    return blocks()


def snapshot(model) -> dict:
    mx.nd.waitall()
    if isinstance(model, dict):
        return {k: np.array(v, dtype=np.float64) for k, v in model.items()}
    return {k: v.data().asnumpy().astype(np.float64) for k, v in model.collect_params().items()}


@pytest.mark.parametrize("which", ["transformer", "cnn", "lstm", "cnn dict"])
@FUZZ
@given(recipe=rule_recipes(), fans=FANS, portable=PORTABLE)
def test_apply_on_gluon_models(zoo, which, recipe, fans, portable):
    model = zoo[which]
    before = snapshot(model)
    try:
        report = apply(model, recipe(), fans=fans, portable=portable)
    except PolyinitError:
        after = snapshot(model)
        assert all(np.array_equal(before[k], after[k]) for k in before), "changed on error"
        return
    after = snapshot(model)
    assert all(np.isfinite(v).all() for v in after.values())
    for row in report.rows:
        if row.plan is None:
            assert np.array_equal(before[row.path], after[row.path]), f"{row.path} undrawn but changed"
