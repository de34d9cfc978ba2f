"""Haiku params trees as models (issue 25, point 3): an MLP, a CNN, an LSTM and an attention block
built with ``hk.transform`` give the same logical records as torch, take rules, draw portable
values bit-identical to torch's, transfer to and from torch with the same outputs, and are left
untouched by an error (a new tree is returned, the given one is never changed)."""

from __future__ import annotations

import numpy as np
import pytest

hk = pytest.importorskip("haiku")
jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp
import torch_twins as twins

import polyinit as pi
from polyinit import rules as R
from polyinit.frameworks import framework_for, walker_for

KEY = jax.random.key(0)


def _init(fn, x, state=False):
    """(tree, run(tree, x)): the params of ``hk.transform(fn)`` (merged with the state, as
    ``{**params, **state}``, where ``state``) and the function applied to a tree."""
    if state:
        model = hk.transform_with_state(fn)
        params, st = model.init(KEY, jnp.asarray(x))
        stats = set(st)

        def run(tree, data):
            p = {k: v for k, v in tree.items() if k not in stats}
            s = {k: v for k, v in tree.items() if k in stats}
            return np.asarray(model.apply(p, s, None, jnp.asarray(data))[0])

        return {**params, **st}, run
    model = hk.transform(fn)
    return model.init(KEY, jnp.asarray(x)), lambda tree, data: np.asarray(model.apply(tree, None, jnp.asarray(data)))


def hk_mlp():
    return _init(lambda x: hk.nets.MLP([8, 3])(x), np.ones((1, 6), np.float32))


def hk_cnn_bn():
    def f(x):
        x = hk.BatchNorm(True, True, 0.9)(hk.Conv2D(4, 3, padding="VALID")(x), is_training=True)
        return hk.Linear(5)(x.reshape(x.shape[0], -1))

    return _init(f, np.ones((1, 8, 8, 3), np.float32), state=True)


def hk_cnn():
    """test_portable_models' CNN: two VALID 3x3 convs with ReLU, a global mean, a dense head."""

    def f(x):
        x = jax.nn.relu(hk.Conv2D(twins.C1, 3, padding="VALID")(x))
        x = jax.nn.relu(hk.Conv2D(twins.C2, 3, padding="VALID")(x))
        return hk.Linear(twins.CLASSES)(x.mean(axis=(1, 2)))

    return _init(f, np.ones((1, twins.SIDE, twins.SIDE, twins.C_IN), np.float32))


def hk_lstm():
    """test_transfer's LSTM: input 6, hidden 8, a dense head on the last step."""

    def f(x):
        core = hk.LSTM(8)
        out, _ = hk.dynamic_unroll(core, x, core.initial_state(x.shape[0]), time_major=False)
        return hk.Linear(3)(out[:, -1])

    return _init(f, twins.SEQ[:1])


def hk_linear_block():
    """test_rules_contract's Block: q, k, v, o dense layers, a layer norm, an MLP."""

    def f(x):
        for _ in range(4):
            x = hk.Linear(8)(x)
        x = hk.LayerNorm(-1, True, True)(x)
        return hk.Linear(8)(jax.nn.relu(hk.Linear(16)(x)))

    # hk.Linear(8)(relu(hk.Linear(16)(x))) builds "linear_5" (8 out) before "linear_6" (16 out)
    # and calls them the other way round: the tree keeps the call order, which is the data flow.
    return _init(f, np.ones((1, 8), np.float32))


def hk_attention():
    """hk.MultiHeadAttention (q, k, v, output), a layer norm, an MLP on a (batch, seq, D) input."""

    def f(x):
        y = hk.MultiHeadAttention(
            twins.HEADS, twins.D // twins.HEADS, w_init=hk.initializers.VarianceScaling(1.0), model_size=twins.D
        )(x, x, x)
        y = hk.LayerNorm(-1, True, True)(y)
        return hk.Linear(twins.D)(jax.nn.relu(hk.Linear(2 * twins.D)(y)))

    return _init(f, np.ones((1, 5, twins.D), np.float32))


def _snapshot(tree):
    """Every array of a params tree, copied, in the tree's order."""
    return [np.asarray(v).copy() for m in tree for v in tree[m].values()]


def test_haiku_trees_are_found_without_importing_and_are_not_linen():
    tree, _ = hk_mlp()
    assert framework_for(tree).name == "haiku"
    from flax import linen

    linen_tree = linen.Dense(3).init(KEY, jnp.ones((1, 6)))
    assert framework_for(linen_tree).name == "linen" and framework_for(linen_tree["params"]).name == "linen"


def test_same_logical_records_as_torch():
    torch_mlp, torch_cnn_bn, torch_block, torch_lstm = (twins._records(m) for m in twins._torch_models())
    assert twins._records(hk_mlp()[0]) == torch_mlp
    assert twins._records(hk_cnn_bn()[0]) == torch_cnn_bn  # running mean and var from the merged state
    assert twins._records(hk_linear_block()[0]) == torch_block
    assert twins._records(hk_lstm()[0]) == torch_lstm == twins.LSTM_RECORDS
    twins.assert_attention_records(twins._records(hk_attention()[0]))


def test_the_record_comparison_can_fail():
    """Per tensor (not collapsed into logical parameters), Haiku's LSTM is 12 gate slices and
    torch's 4 tensors; a 16-wide hidden layer is another architecture."""
    assert twins._records(hk_lstm()[0], grouped=False) != twins._records(twins._torch_models()[-1], grouped=False)
    wider, _ = _init(lambda x: hk.nets.MLP([16, 3])(x), np.ones((1, 6), np.float32))
    assert twins._records(wider) != twins._records(twins._torch_models()[0])


def test_lstm_records_slice_the_packed_kernel_in_torchs_gate_order():
    tree, _ = hk_lstm()
    params = walker_for(tree).walk(tree)
    assert [p.path for p in params[:5]] == [
        "lstm/linear/w[weight:i]",
        "lstm/linear/w[weight:f]",
        "lstm/linear/w[weight:g]",
        "lstm/linear/w[weight:o]",
        "lstm/linear/w[recurrent:i]",
    ]
    w = np.asarray(tree["lstm/linear"]["w"])  # (6 + 8, 32), blocks i, g, f, o
    walker = walker_for(tree)
    walker.walk(tree)
    assert np.array_equal(walker.read(tree, params[1]), w[:6, 16:24])  # forget: Haiku's third block
    assert np.array_equal(walker.read(tree, params[5]), w[6:, 16:24])
    bias_f = next(p for p in params if p.path == "lstm/linear/b[bias:f]")
    assert np.array_equal(walker.read(tree, bias_f), np.ones(8))  # stored 0, plus Haiku's call-time 1


def test_rules_apply_and_return_a_new_tree():
    tree, _ = hk_mlp()
    before = {m: {k: np.asarray(v) for k, v in leaves.items()} for m, leaves in tree.items()}
    new, report = R.apply(tree, R.Rules([(R.role("weight"), pi.ones()), (R.role("bias"), pi.constant(0.5))]))
    assert all(np.array_equal(np.asarray(tree[m][k]), before[m][k]) for m in tree for k in tree[m])  # untouched
    assert np.all(np.asarray(new["mlp/~/linear_0"]["w"]) == 1) and np.all(np.asarray(new["mlp/~/linear_1"]["b"]) == 0.5)
    assert list(new) == list(tree) and all(list(new[m]) == list(tree[m]) for m in tree)
    assert isinstance(new["mlp/~/linear_0"]["w"], jax.Array) and new["mlp/~/linear_0"]["w"].dtype == jnp.float32
    assert len(report.rows) == 4
    dense = R.select(tree, R.kind("dense") & R.role("weight") & R.last())
    assert [p.path for p in dense] == ["mlp/~/linear_1/w"]


def test_native_fans_follow_haikus_layout():
    tree, _ = hk_cnn()
    new, _ = R.apply(tree, R.Rules([(R.kind("conv") & R.role("weight"), pi.ones()), (R.every(), R.KEEP)]))
    conv = walker_for(tree).walk(tree)[0]
    assert conv.path == "conv2_d/w" and conv.fans().fan_in == 9 * twins.C_IN and conv.fans().fan_out == 9 * twins.C1
    assert np.all(np.asarray(new["conv2_d"]["w"]) == 1.0)


def test_lstm_rules_write_the_effective_forget_bias():
    """A rule for the LSTM bias means the effective bias, as in torch: zeros store -1 in Haiku's
    forget block (its call adds 1), and Keras's unit forget bias (lstm_bias) stores Haiku's own 0."""
    tree, _ = hk_lstm()
    zeros, _ = R.apply(tree, R.Rules([(R.role("bias"), pi.zeros()), (R.every(), R.KEEP)]))
    b = np.asarray(zeros["lstm/linear"]["b"])  # blocks i, g, f, o
    assert np.all(b[16:24] == -1) and np.all(np.delete(b, np.s_[16:24]) == 0)


def test_portable_cnn_is_bit_identical_to_torch():
    from test_portable_models import logical

    x = np.random.default_rng(0).standard_normal((4, twins.SIDE, twins.SIDE, twins.C_IN)).astype(np.float32)
    model, run_torch = twins.torch_cnn()
    R.apply(model, twins.RULES, portable=True)
    tree, run = hk_cnn()
    new, _ = R.apply(tree, twins.RULES, portable=True)
    expected, found = logical(model, "torch"), logical(new, "haiku")
    assert len(found) == len(expected) == 6
    for a, b in zip(expected, found):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    np.testing.assert_allclose(run(new, x), run_torch(x), rtol=1e-4, atol=1e-5)


def test_portable_lstm_matches_torch():
    """Bit for bit, except the forget gate's bias: Haiku stores it minus the 1 its call adds, and
    float32 cannot hold both v and v - 1 exactly (the effective value is within 2**-24 of torch's)."""
    model, run_torch = twins._torch_lstm()
    R.apply(model, twins.LSTM_RULES, portable=True)
    tree, run = hk_lstm()
    new, _ = R.apply(tree, twins.LSTM_RULES, portable=True)
    expected, found = twins._logical_values(model), twins._logical_values(new)
    assert [w.shape for w in found] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
    for index, (a, b) in enumerate(zip(expected, found)):
        if index == 2:  # (8 hidden, 4 gates i f g o)
            assert a[:, [0, 2, 3]].tobytes() == b[:, [0, 2, 3]].tobytes()
            np.testing.assert_allclose(b[:, 1], a[:, 1], rtol=0, atol=2.0**-24)
        else:
            assert a.tobytes() == b.tobytes(), index
    np.testing.assert_allclose(run(new, twins.SEQ), run_torch(twins.SEQ), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "build,torch_build,data,rows",
    [
        (hk_cnn, twins.torch_cnn, twins.X, 6),
        (hk_lstm, twins._torch_lstm, twins.SEQ, 5),
        (hk_attention, twins.torch_attention, twins.ATTENTION_X, 14),
    ],
    ids=["cnn", "lstm", "attention"],
)
def test_transfer_to_and_from_torch_keeps_the_function(build, torch_build, data, rows):
    tree, run = build()
    twins.assert_transfer_round_trip(torch_build, tree, run, data, rows)


def test_errors_change_nothing():
    twins.assert_refusals_write_nothing(hk_cnn()[0], _snapshot)


def test_a_failing_write_is_an_error_and_the_tree_is_unchanged(monkeypatch):
    from polyinit.frameworks import haiku as fhk

    twins.assert_failed_write_changes_nothing(monkeypatch, fhk.HaikuWalker, hk_mlp()[0], _snapshot)


def test_compare_model_lists_a_haiku_tree_without_a_signal(tmp_path, monkeypatch):
    import sys

    from polyinit.compare_model import compare_model

    (tmp_path / "hk_models.py").write_text(
        "def mlp():\n    import haiku as hk, jax, jax.numpy as jnp\n"
        "    return hk.transform(lambda x: hk.nets.MLP([16, 4])(x)).init(jax.random.key(0), jnp.ones((1, 8)))\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        result = compare_model("hk_models:mlp", frameworks=["torch", "flax"])
    finally:
        sys.modules.pop("hk_models", None)
    assert result.model_framework == "haiku" and result.output_var == {}
    assert [p["path"] for p in result.params] == [
        "mlp/~/linear_0/w",
        "mlp/~/linear_0/b",
        "mlp/~/linear_1/w",
        "mlp/~/linear_1/b",
    ]
    assert "fan_in" in result.specs["torch"][0] and any("no function" in note for note in result.notes)


def test_portable_attention_block_is_bit_identical_to_torch():
    tree, run = hk_attention()
    twins.assert_portable_attention_matches_torch(tree, run)


def test_every_record_has_its_own_seed_key():
    for build in (hk_mlp, hk_cnn_bn, hk_lstm, hk_attention, hk_linear_block):
        keys = [p.key for p in walker_for(build()[0]).walk(build()[0])]
        assert len(set(keys)) == len(keys), keys
    new, _ = R.apply(hk_cnn_bn()[0], R.Rules([(R.every(), pi.Uniform(low=0.5, high=1.0))]))
    assert not np.array_equal(new["batch_norm/~/mean_ema"]["average"], new["batch_norm/~/var_ema"]["average"])
