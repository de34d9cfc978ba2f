"""Equinox modules as models (issue 25, point 3): an MLP, a CNN, an LSTM cell and a
MultiheadAttention block give the same logical records as torch, take rules, draw portable values
bit-identical to torch's, transfer to and from torch with the same outputs, and are left untouched
by an error (``eqx.tree_at`` returns a new module; the given one is never changed)."""

from __future__ import annotations

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp
import torch_twins as twins

import polyinit as pi
from polyinit import rules as R
from polyinit.frameworks import framework_for, walker_for

KEYS = list(jax.random.split(jax.random.key(0), 8))


class CNN(eqx.Module):
    """test_portable_models' CNN on NHWC input: two 3x3 convs with ReLU, a global mean, a head."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self):
        self.conv1 = eqx.nn.Conv2d(twins.C_IN, twins.C1, 3, key=KEYS[0])
        self.conv2 = eqx.nn.Conv2d(twins.C1, twins.C2, 3, key=KEYS[1])
        self.head = eqx.nn.Linear(twins.C2, twins.CLASSES, key=KEYS[2])

    def __call__(self, x):  # one (H, W, C) example
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(jnp.transpose(x, (2, 0, 1))))))
        return self.head(x.mean(axis=(1, 2)))


class CNNWithNorm(eqx.Module):
    conv: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm
    head: eqx.nn.Linear

    def __init__(self):
        self.conv = eqx.nn.Conv2d(3, 4, 3, key=KEYS[0])
        self.norm = eqx.nn.BatchNorm(4, "batch", mode="batch")
        self.head = eqx.nn.Linear(4 * 6 * 6, 5, key=KEYS[1])


class LSTM(eqx.Module):
    """test_transfer's LSTM: an LSTMCell (6 -> 8) scanned over time, a dense head on the last step."""

    cell: eqx.nn.LSTMCell
    head: eqx.nn.Linear

    def __init__(self):
        self.cell, self.head = eqx.nn.LSTMCell(6, 8, key=KEYS[3]), eqx.nn.Linear(8, 3, key=KEYS[4])

    def __call__(self, xs):  # one (time, 6) sequence
        def step(state, x):
            state = self.cell(x, state)
            return state, None

        (h, _), _ = jax.lax.scan(step, (jnp.zeros(8), jnp.zeros(8)), xs)
        return self.head(h)


class Block(eqx.Module):
    """MultiheadAttention (with biases, as torch's), a layer norm, an MLP; one (seq, D) example."""

    attn: eqx.nn.MultiheadAttention
    norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __init__(self):
        self.attn = eqx.nn.MultiheadAttention(
            twins.HEADS,
            twins.D,
            use_query_bias=True,
            use_key_bias=True,
            use_value_bias=True,
            use_output_bias=True,
            key=KEYS[5],
        )
        self.norm = eqx.nn.LayerNorm(twins.D)
        self.up, self.down = (
            eqx.nn.Linear(twins.D, 2 * twins.D, key=KEYS[6]),
            eqx.nn.Linear(2 * twins.D, twins.D, key=KEYS[7]),
        )

    def __call__(self, x):
        y = jax.vmap(self.norm)(self.attn(x, x, x))
        return jax.vmap(self.down)(jax.nn.relu(jax.vmap(self.up)(y)))


class LinearBlock(eqx.Module):
    """test_rules_contract's Block: q, k, v, o dense layers, a layer norm, an MLP."""

    q: eqx.nn.Linear
    k: eqx.nn.Linear
    v: eqx.nn.Linear
    o: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear

    def __init__(self):
        self.q, self.k, self.v, self.o = (eqx.nn.Linear(8, 8, key=KEYS[i]) for i in range(4))
        self.norm = eqx.nn.LayerNorm(8)
        self.up, self.down = eqx.nn.Linear(8, 16, key=KEYS[4]), eqx.nn.Linear(16, 8, key=KEYS[5])


def run(model, data):
    return np.asarray(jax.vmap(model)(jnp.asarray(data)))


def _leaves(model):
    return [np.asarray(leaf).copy() for leaf in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


def _no_stats(records):
    """Equinox keeps batch norm's running statistics in ``eqx.nn.State``, outside the module."""
    return [r for r in records if not r[2].startswith("running_")]


def test_equinox_modules_are_found():
    assert framework_for(eqx.nn.Linear(2, 3, key=KEYS[0])).name == "equinox"
    assert framework_for(CNN()).walker().name == "equinox"


def test_same_logical_records_as_torch():
    torch_mlp, torch_cnn_bn, torch_block, torch_lstm = (twins._records(m) for m in twins._torch_models())
    assert twins._records(eqx.nn.MLP(6, 3, 8, 1, key=KEYS[0])) == torch_mlp
    assert twins._records(CNNWithNorm()) == _no_stats(torch_cnn_bn)
    assert twins._records(LinearBlock()) == torch_block
    assert twins._records(LSTM()) == torch_lstm == twins.LSTM_RECORDS
    twins.assert_attention_records(twins._records(Block()))


def test_the_record_comparison_can_fail():
    """Per tensor, torch's LSTM has two biases where the cell has one; without biases, Equinox's
    default MultiheadAttention is another architecture than torch's."""
    assert twins._records(LSTM(), grouped=False) != twins._records(twins._torch_models()[-1], grouped=False)
    plain = eqx.nn.MultiheadAttention(twins.HEADS, twins.D, key=KEYS[0])
    assert twins._records(plain) != twins._records(torch.nn.MultiheadAttention(twins.D, twins.HEADS))
    assert sorted(twins._records(plain)) == sorted(
        twins._records(torch.nn.MultiheadAttention(twins.D, twins.HEADS, bias=False))
    )


def test_declaration_order_is_the_field_order():
    class Net(eqx.Module):
        zeta: eqx.nn.Linear  # declared first, sorts last
        alpha: eqx.nn.Linear

        def __init__(self):
            self.alpha, self.zeta = eqx.nn.Linear(8, 2, key=KEYS[0]), eqx.nn.Linear(4, 8, key=KEYS[1])

    paths = [p.path for p in walker_for(Net()).walk(Net())]
    assert paths == ["zeta.weight", "zeta.bias", "alpha.weight", "alpha.bias"]
    assert [p.path for p in R.select(Net(), R.kind("dense") & R.first())] == ["zeta.weight", "zeta.bias"]


def test_conv_bias_is_read_as_a_vector():
    conv = walker_for(CNN()).walk(CNN())[:2]
    assert conv[0].shape == (twins.C1, twins.C_IN, 3, 3) and conv[0].fans().fan_in == 9 * twins.C_IN
    assert conv[1].shape == (twins.C1, 1, 1) and conv[1].logical_shape == (twins.C1,)


def test_rules_return_a_new_module_and_keep_the_old():
    model = eqx.nn.MLP(6, 3, 8, 1, key=KEYS[0])
    before = _leaves(model)
    new, report = R.apply(model, R.Rules([(R.role("weight"), pi.ones()), (R.role("bias"), pi.constant(0.5))]))
    assert all(np.array_equal(a, b) for a, b in zip(before, _leaves(model)))
    assert np.all(np.asarray(new.layers[0].weight) == 1) and np.all(np.asarray(new.layers[1].bias) == 0.5)
    assert type(new) is type(model) and new.layers[0].weight.dtype == jnp.float32 and len(report.rows) == 4


def test_portable_cnn_is_bit_identical_to_torch():
    data = np.random.default_rng(0).standard_normal((4, 12, 12, twins.C_IN)).astype(np.float32)
    model, run_torch = twins.torch_cnn()
    R.apply(model, twins.RULES, portable=True)
    new, _ = R.apply(CNN(), twins.RULES, portable=True)
    expected, found = twins._logical_values(model), twins._logical_values(new)  # the conv biases as (C,)
    assert len(found) == len(expected) == 6
    for a, b in zip(expected, found):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    np.testing.assert_allclose(run(new, data), run_torch(data), rtol=1e-4, atol=1e-5)


def test_portable_lstm_is_bit_identical_to_torch():
    model, run_torch = twins._torch_lstm()
    R.apply(model, twins.LSTM_RULES, portable=True)
    new, _ = R.apply(LSTM(), twins.LSTM_RULES, portable=True)
    expected, found = twins._logical_values(model), twins._logical_values(new)
    assert [w.shape for w in found] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
    for a, b in zip(expected, found):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(run(new, twins.SEQ), run_torch(twins.SEQ), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "build,torch_build,data,rows",
    [
        (CNN, twins.torch_cnn, twins.X, 6),
        (LSTM, twins._torch_lstm, twins.SEQ, 5),
        (Block, twins.torch_attention, twins.ATTENTION_X, 14),
    ],
    ids=["cnn", "lstm", "attention"],
)
def test_transfer_to_and_from_torch_keeps_the_function(build, torch_build, data, rows):
    twins.assert_transfer_round_trip(torch_build, build(), run, data, rows)


def test_errors_change_nothing():
    twins.assert_refusals_write_nothing(CNN(), _leaves)


def test_a_failing_write_is_an_error_and_the_module_is_unchanged(monkeypatch):
    from polyinit.frameworks import equinox as feqx

    twins.assert_failed_write_changes_nothing(
        monkeypatch, feqx.EquinoxWalker, eqx.nn.MLP(6, 3, 8, 1, key=KEYS[0]), _leaves
    )


# --- Equinox's layer defaults against the installed equinox ---------------------------------------

from test_defaults import DIMS, find


def equinox_layer(layer, seed):
    """Every array of a freshly built real Equinox layer (dims as test_defaults' DIMS), by path."""
    key = jax.random.key(seed)
    make = {
        "dense": lambda: eqx.nn.Linear(96, 64, key=key),
        "conv": lambda: eqx.nn.Conv2d(16, 32, 3, groups=2, key=key),
        "conv_transpose": lambda: eqx.nn.ConvTranspose2d(16, 32, 3, key=key),
        "embedding": lambda: eqx.nn.Embedding(500, 32, key=key),
        "lstm": lambda: eqx.nn.LSTMCell(24, 32, key=key),
        "gru": lambda: eqx.nn.GRUCell(24, 32, key=key),
        "batchnorm": lambda: eqx.nn.BatchNorm(48, "batch", mode="batch"),
        "layernorm": lambda: eqx.nn.LayerNorm(48),
        "mha": lambda: eqx.nn.MultiheadAttention(4, 64, key=key),
    }[layer]
    module = make()
    walker = walker_for(module)
    return {p.path: walker.read(module, p) for p in walker.walk(module)}


@pytest.mark.parametrize("layer", list(DIMS))
def test_registry_matches_real_equinox_layers(layer):
    from polyinit.conformance import check, failures, samples_needed
    from polyinit.defaults import layer_defaults

    params = layer_defaults("equinox", layer, **DIMS[layer])
    first = equinox_layer(layer, 0)
    assert len(first) == len(params), f"real layer has {sorted(first)}, registry has {sorted(params)}"
    count = max(samples_needed(p.plan(), minimum=1 << 15) for p in params.values())
    builds = [first] + [equinox_layer(layer, seed) for seed in range(1, min(count, 40))]
    for name, param in params.items():
        draws = [find(b, name) for b in builds]
        assert draws[0].shape == param.shape, f"{name}: real {draws[0].shape} != registry {param.shape}"
        bad = failures(check(draws, param.plan()))
        assert not bad, f"equinox {layer} {name}: " + "; ".join(map(str, bad))


def test_the_registry_check_can_fail():
    """A wrong bound (torch's LSTM weights use the same U(+-1/sqrt(H)); a dense layer's is
    1/sqrt(in), not 1/sqrt(out)) is caught by the same statistics."""
    from polyinit.conformance import check, failures
    from polyinit.defaults import Param as Default

    wrong = Default(pi.Uniform(low=-1 / 8.0, high=1 / 8.0), pi.OUT_IN, (64, 96))  # 1/sqrt(64): out, not in
    draws = [equinox_layer("dense", seed)["weight"] for seed in range(4)]
    assert failures(check(draws, wrong.plan()))


# --- compare --model -----------------------------------------------------------------------------

MODELS = """
def equinox_mlp():
    import equinox as eqx, jax
    a, b = jax.random.split(jax.random.key(0))
    return eqx.nn.Sequential([eqx.nn.Linear(512, 512, use_bias=False, key=a),
                              eqx.nn.Linear(512, 512, use_bias=False, key=b)]), (512, 512)
"""


def test_compare_model_on_an_equinox_model(tmp_path, monkeypatch):
    """Two bias-free 512 -> 512 layers on N(0, 1) input: Var(out) = (512 var(w))^2, so (1/3)^2
    for Equinox's own U(+-1/sqrt(512)) and torch's, 1 for Keras's Glorot and Flax's LeCun (one
    network: about 9% spread, 25% allowed, as tests/test_compare_model.py)."""
    import sys

    from polyinit.compare_model import compare_model

    (tmp_path / "eqx_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    try:
        result = compare_model("eqx_models:equinox_mlp", frameworks=["equinox", "torch", "keras", "flax"])
    finally:
        sys.modules.pop("eqx_models", None)
    assert result.model_framework == "equinox" and [p["path"] for p in result.params] == [
        "layers.0.weight",
        "layers.1.weight",
    ]
    expected = {"native": 1 / 9, "equinox": 1 / 9, "torch": 1 / 9, "keras": 1.0, "flax": 1.0}
    for name, value in expected.items():
        assert result.output_var[name] == pytest.approx(value, rel=0.25), name


class Bank(eqx.Module):
    """A user's own layer that keeps its weights in a tuple."""

    ws: tuple

    def __init__(self):
        self.ws = (jnp.zeros((3, 2)), jnp.zeros((4, 3)))


def test_arrays_in_a_tuple_are_parameters_of_a_registered_user_layer():
    from polyinit.frameworks import class_path, register_module_type
    from polyinit.params import ModuleType, ParamType

    with pytest.warns(UserWarning, match="no registry entry describes"):  # unregistered: reported, not guessed
        assert [p.kind for p in walker_for(Bank()).walk(Bank())] == ["other", "other"]
    register_module_type(class_path(Bank), ModuleType("dense", {"*": ParamType("weight", "out in")}))
    model = Bank()
    params = walker_for(model).walk(model)
    assert [(p.path, p.kind, p.fans().fan_in) for p in params] == [("ws.0", "dense", 2), ("ws.1", "dense", 3)]
    new, _ = R.apply(model, R.Rules([(R.every(), pi.ones())]))
    assert all(np.all(np.asarray(w) == 1) for w in new.ws) and not np.asarray(model.ws[0]).any()


def test_portable_attention_block_is_bit_identical_to_torch():
    twins.assert_portable_attention_matches_torch(Block(), run)
