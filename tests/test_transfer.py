"""transfer (issue 12, point 4): weights copied between frameworks through the portable records,
layouts converted; a torch CNN round-trips through Keras and nnx with identical outputs, and so
does an LSTM (through Keras, nnx's two cells and linen); every mismatch is an error that writes
nothing."""

from __future__ import annotations

import numpy as np
import pytest
from test_portable_models import keras_cnn, nnx_cnn, torch_cnn

from polyinit.transferring import TransferError, transfer

X = np.random.default_rng(1).standard_normal((3, 12, 12, 3)).astype(np.float32)


def _outputs(run) -> np.ndarray:
    return np.asarray(run(X), dtype=np.float32)


def test_torch_to_keras_and_nnx_and_back_gives_identical_outputs():
    source, run_source = torch_cnn()
    expected = _outputs(run_source)
    for build in (keras_cnn, nnx_cnn):
        middle, run_middle = build()
        report = transfer(source, middle)
        assert len(report.rows) == 6
        np.testing.assert_allclose(_outputs(run_middle), expected, rtol=1e-4, atol=1e-5)
        back, run_back = torch_cnn()
        transfer(middle, back)
        for a, b in zip(source.parameters(), back.parameters()):
            assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()
        assert _outputs(run_back).tobytes() == expected.tobytes()


def test_sources_state_dict_and_keras_weights_file(tmp_path):
    source, run_source = torch_cnn()
    target, run_target = nnx_cnn()
    transfer(source.state_dict(), target)
    np.testing.assert_allclose(_outputs(run_target), _outputs(run_source), rtol=1e-4, atol=1e-5)
    keras_model, _ = keras_cnn()
    transfer(source, keras_model)
    path = tmp_path / "cnn.weights.h5"
    keras_model.save_weights(path)
    fresh, _ = torch_cnn()
    with pytest.raises(TransferError, match="source_model="):
        transfer(path, fresh)
    template, _ = keras_cnn()
    transfer(path, fresh, source_model=template)
    for a, b in zip(source.parameters(), fresh.parameters()):
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()


def test_mismatches_are_errors_and_write_nothing():
    torch = pytest.importorskip("torch")
    source, _ = torch_cnn()
    other = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 5),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    before = [p.detach().clone() for p in other.parameters()]
    with pytest.raises(
        TransferError,
        match=r"diverge at layer.1.weight \(2.weight, logical shape \(16, 8, 5, 5\)\): the source's layer.1.weight \(2.weight, logical shape \(16, 8, 3, 3\)\)",
    ):
        transfer(source, other)
    shorter = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(
        TransferError,
        match=r"first source parameter with no counterpart is layer.1.weight \(2.weight.*the first target one nothing",
    ):
        transfer(source, shorter)
    assert all(a.equal(b) for a, b in zip(before, other.parameters()))


# --- an LSTM: packed gates, per-gate kernels and a summed bias ---------------------------------

SEQ = np.random.default_rng(2).standard_normal((3, 5, 6)).astype(np.float32)  # (batch, time, input 6)


def _torch_lstm():
    torch = pytest.importorskip("torch")

    class LSTM(torch.nn.Module):  # input 6, hidden 8, a dense head on the last step
        def __init__(self):
            super().__init__()
            self.lstm, self.head = torch.nn.LSTM(6, 8, batch_first=True), torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    model = LSTM()
    return model, lambda x: model(torch.as_tensor(x)).detach().numpy()


def _keras_lstm():
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((5, 6)), keras.layers.LSTM(8), keras.layers.Dense(3)])
    return model, lambda x: keras.ops.convert_to_numpy(model(x))


def _nnx_lstm(cell_name):
    nnx = pytest.importorskip("flax.nnx")

    class LSTM(nnx.Module):
        def __init__(self, rngs):
            self.rnn = nnx.RNN(getattr(nnx, cell_name)(6, 8, rngs=rngs))
            self.head = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.head(self.rnn(x)[:, -1])

    model = LSTM(nnx.Rngs(0))
    return model, lambda x: np.asarray(model(x))


def test_an_lstm_moves_between_torch_keras_nnx_and_linen_with_identical_outputs():
    """torch's packed (4H, in) weights and b_ih + b_hh, Keras's (in, 4H) kernels and one bias,
    nnx's and linen's per-gate kernels (or OptimizedLSTMCell's fused ones): the same gates (i, f,
    g, o) in every framework, so the same function after a transfer either way."""
    torch = pytest.importorskip("torch")
    source, run_source = _torch_lstm()
    with torch.no_grad():  # away from the defaults, biases included, so a wrong gate would show
        for p in source.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    expected = run_source(SEQ)
    middles = [_keras_lstm, lambda: _nnx_lstm("LSTMCell"), lambda: _nnx_lstm("OptimizedLSTMCell")]
    for build in middles:
        middle, run_middle = build()
        report = transfer(source, middle)
        assert [r.logical_shape for r in report.rows] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
        back, run_back = _torch_lstm()
        # The middle runs first: nnx.RNN's scan (like nnx.jit) leaves the cell's attributes sorted
        # by name, and the records must still come in declaration order.
        np.testing.assert_allclose(run_middle(SEQ), expected, rtol=1e-5, atol=1e-6)
        transfer(middle, back)
        np.testing.assert_allclose(run_back(SEQ), expected, rtol=1e-5, atol=1e-6)
        # The effective bias comes back; its split between b_ih and b_hh does not (all in b_ih).
        lstm, again = source.lstm, back.lstm
        assert torch.equal(again.bias_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0) and not again.bias_hh_l0.any()
        assert torch.equal(again.weight_ih_l0, lstm.weight_ih_l0) and torch.equal(again.weight_hh_l0, lstm.weight_hh_l0)

    jax = pytest.importorskip("jax")
    from flax import linen

    class Linen(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.RNN(linen.LSTMCell(8))(x)[:, -1])

    tree, _ = transfer(source, Linen().init(jax.random.key(0), SEQ[:1]))
    np.testing.assert_allclose(np.asarray(Linen().apply(tree, SEQ)), expected, rtol=1e-5, atol=1e-6)


def test_an_lstm_does_not_pair_with_a_gru_or_another_width():
    torch = pytest.importorskip("torch")
    source, _ = _torch_lstm()
    gru = torch.nn.Sequential(torch.nn.GRU(6, 8), torch.nn.Linear(8, 3))  # b_ih, b_hh: no sum in a GRU
    with pytest.raises(
        TransferError,
        match=r"first target one layer.0.bias.1 \(0.bias_hh_l0.*source has 5 logical parameters, target 6",
    ):
        transfer(source, gru)
    wider = torch.nn.Sequential(torch.nn.LSTM(6, 16), torch.nn.Linear(16, 3))
    before = [p.detach().clone() for p in wider.parameters()]
    with pytest.raises(
        TransferError,
        match=r"diverge at layer.0.weight \(0.weight_ih_l0, logical shape \(4, 16, 6\)\).*logical shape \(8, 6, 4\)",
    ):
        transfer(source, wider)
    assert all(a.equal(b) for a, b in zip(before, wider.parameters()))


def test_a_keras_gru_moves_to_a_keras_gru_and_is_refused_against_torch():
    """Keras's GRUCell keeps its input and recurrent biases stacked, (2, 3H): a 'batch out'
    tensor, not a rank-1 'out' (which made any Keras GRU transfer a ShapeError). torch orders a
    GRU's gates r, z, n and Keras z, r, h, and torch keeps two bias vectors: no pairing is made
    that would mix gates; it is refused."""
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")

    def gru():
        return keras.Sequential([keras.Input((5, 6)), keras.layers.GRU(8), keras.layers.Dense(3)])

    source, target = gru(), gru()
    x = np.random.default_rng(2).standard_normal((2, 5, 6)).astype(np.float32)
    transfer(source, target)
    np.testing.assert_array_equal(np.asarray(target(x)), np.asarray(source(x)))
    before = [np.array(w) for w in target.get_weights()]
    with pytest.raises(
        TransferError, match=r"first source parameter with no counterpart is layer.0.bias.1 \(0.bias_hh_l0"
    ):
        transfer(torch.nn.Sequential(torch.nn.GRU(6, 8), torch.nn.Linear(8, 3)), target)
    assert all(np.array_equal(a, b) for a, b in zip(before, target.get_weights()))


def test_an_lstm_state_dict_pairs_as_its_model():
    """A state_dict has no module types: an RNN's leaves are typed from their names and shapes
    (weight_hh (4H, H): 4 gates), so the packed gates and the summed biases pair as the model's."""
    torch = pytest.importorskip("torch")
    source, run_source = _torch_lstm()
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    expected = run_source(SEQ)
    for build in (_keras_lstm, lambda: _nnx_lstm("LSTMCell")):
        target, run_target = build()
        report = transfer(source.state_dict(), target)
        assert [r.logical_shape for r in report.rows] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
        np.testing.assert_allclose(run_target(SEQ), expected, rtol=1e-5, atol=1e-6)
    gru = torch.nn.GRU(6, 8)  # 3 gates: no gate view, biases kept apart (b_hn is scaled by r)
    again = torch.nn.GRU(6, 8)
    transfer(gru.state_dict(), again)
    assert all(torch.equal(a, b) for a, b in zip(gru.parameters(), again.parameters()))
    keras = pytest.importorskip("keras")
    keras_gru = keras.Sequential([keras.Input((5, 6)), keras.layers.GRU(8)])
    with pytest.raises(
        TransferError, match=r"first source parameter with no counterpart is layer.0.bias.1 \(bias_hh_l0"
    ):
        transfer(gru.state_dict(), keras_gru)
