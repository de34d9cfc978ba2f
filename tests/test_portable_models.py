"""Portable apply (issue 12, point 3): the same rules and seed on the same CNN written in torch,
Keras and nnx give the same float32 weights bit for bit, up to each framework's layout, and so
the same outputs on the same input to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

import polyinit as pi
from polyinit.rules import Rules, apply, kind, role

RULES = Rules(
    [
        (kind("conv") & role("weight"), pi.he_normal()),
        (kind("dense") & role("weight"), pi.glorot_uniform()),
        (role("bias"), pi.Uniform(low=-0.1, high=0.1)),
    ],
    seed=2024,
)
C_IN, C1, C2, CLASSES, SIDE = 3, 8, 16, 10, 12


def torch_cnn():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(C_IN, C1, 3),
        nn.ReLU(),
        nn.Conv2d(C1, C2, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(C2, CLASSES),
    )
    return model, lambda x: model(torch.as_tensor(x).permute(0, 3, 1, 2)).detach().numpy()


def keras_cnn():
    keras = pytest.importorskip("keras")
    model = keras.Sequential(
        [
            keras.Input((SIDE, SIDE, C_IN)),
            keras.layers.Conv2D(C1, 3, activation="relu"),
            keras.layers.Conv2D(C2, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES),
        ]
    )
    return model, lambda x: keras.ops.convert_to_numpy(model(x))


def nnx_cnn():
    nnx = pytest.importorskip("flax.nnx")
    import jax

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(C_IN, C1, (3, 3), padding="VALID", rngs=rngs)
            self.conv2 = nnx.Conv(C1, C2, (3, 3), padding="VALID", rngs=rngs)
            self.head = nnx.Linear(C2, CLASSES, rngs=rngs)

        def __call__(self, x):
            x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
            return self.head(x.mean(axis=(1, 2)))

    model = CNN(nnx.Rngs(0))
    return model, lambda x: np.asarray(model(x))


def logical(report_model, framework: str) -> list[np.ndarray]:
    """Every parameter as a numpy array in the logical order (out, in, kh, kw)."""
    from polyinit.frameworks import walker_for
    from polyinit.logical import canonical_order

    walker = walker_for(report_model)
    arrays = []
    for param in walker.walk(report_model):
        values = np.asarray(walker.read(report_model, param), dtype=np.float32)
        arrays.append(np.transpose(values, canonical_order(param, param.shape, param.semantic_layout)))
    return arrays


def test_same_weights_and_outputs_in_torch_keras_and_nnx():
    x = np.random.default_rng(0).standard_normal((4, SIDE, SIDE, C_IN)).astype(np.float32)
    weights, outputs = {}, {}
    for name, build in (("torch", torch_cnn), ("keras", keras_cnn), ("nnx", nnx_cnn)):
        model, run = build()
        apply(model, RULES, portable=True)
        weights[name], outputs[name] = logical(model, name), run(x)
    for name in ("keras", "nnx"):
        assert len(weights[name]) == len(weights["torch"])
        for a, b in zip(weights["torch"], weights[name]):
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), name
        np.testing.assert_allclose(outputs[name], outputs["torch"], rtol=1e-4, atol=1e-5)


def test_portable_apply_is_reproducible_and_differs_by_seed():
    model, _ = torch_cnn()
    apply(model, RULES, portable=True)
    first = [p.detach().clone() for p in model.parameters()]
    apply(model, RULES, portable=True)
    assert all(a.equal(b) for a, b in zip(first, model.parameters()))
    other = Rules(RULES.rules, seed=RULES.seed + 1)
    apply(model, other, portable=True)
    assert not any(a.equal(b) for a, b in zip(first, model.parameters()))


def test_orthogonal_is_refused_in_portable_mode_and_nothing_is_written():
    model, _ = torch_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(pi.NotExpressibleError):
        apply(model, Rules([(role("weight"), pi.Orthogonal()), (role("bias"), pi.zeros())]), portable=True)
    assert all(a.equal(b) for a, b in zip(before, model.parameters()))


def test_the_portable_cnn_example_runs():
    for framework in ("torch", "keras", "flax"):
        pytest.importorskip(framework)
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.path.dirname(here) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    out = subprocess.run(
        [sys.executable, "portable_cnn.py"],
        cwd=os.path.join(here, "..", "examples"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-identical (torch vs Keras): True" in out.stdout


LSTM_RULES = Rules(
    [
        (kind("recurrent") & role("weight"), pi.glorot_uniform()),
        (kind("recurrent") & role("recurrent"), pi.he_normal(truncated=True)),
        (kind("recurrent") & role("bias"), pi.Uniform(low=-0.2, high=0.2)),
        (kind("dense") & role("weight"), pi.glorot_uniform()),
        (kind("dense") & role("bias"), pi.zeros()),
    ],
    seed=7,
)


def _logical_values(model) -> list[np.ndarray]:
    """Every logical parameter (per-gate kernels stacked, b_ih + b_hh summed) in the canonical order."""
    from polyinit.frameworks import walker_for
    from polyinit.params import logical_params
    from polyinit.transfer_values import read_logical

    walker = walker_for(model)
    return [
        read_logical(p, lambda part: walker.read(model, part)).astype(np.float32)
        for p in logical_params(walker.walk(model))
    ]


def _values_by_identity(model) -> dict[str, np.ndarray]:
    """Every logical parameter's values by its semantic identity (``3.attn.q.weight``), so that two
    implementations that declare q/k/v in another order (a packed in_proj against per-projection
    weights) are compared parameter by parameter."""
    from polyinit.frameworks import walker_for
    from polyinit.identity import identified
    from polyinit.transfer_values import read_logical

    walker = walker_for(model)
    return {
        p.identity: read_logical(p, lambda part: walker.read(model, part)).astype(np.float32)
        for p in identified(walker.walk(model), model)
    }


def test_an_lstm_gets_the_same_weights_and_outputs_in_torch_keras_nnx_and_linen():
    """nnx's and linen's four per-gate kernels are drawn as one stacked tensor, equal to torch's
    and Keras's packed (4H, in) weights; torch's two biases as one value (the second zero), equal
    to Keras's and nnx's single bias: bit for bit, and so the same outputs."""
    from test_transfer import SEQ, _keras_lstm, _nnx_lstm, _torch_lstm

    jax = pytest.importorskip("jax")
    from flax import linen

    class Linen(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.RNN(linen.LSTMCell(8))(x)[:, -1])

    weights, outputs = {}, {}
    for name, build in (
        ("torch", _torch_lstm),
        ("keras", _keras_lstm),
        ("nnx", lambda: _nnx_lstm("LSTMCell")),
        ("nnx optimized", lambda: _nnx_lstm("OptimizedLSTMCell")),
    ):
        model, run = build()
        apply(model, LSTM_RULES, portable=True)
        weights[name], outputs[name] = _logical_values(model), run(SEQ)
    tree, _ = apply(Linen().init(jax.random.key(0), SEQ[:1]), LSTM_RULES, portable=True)
    weights["linen"], outputs["linen"] = _logical_values(tree), np.asarray(Linen().apply(tree, SEQ))
    assert [w.shape for w in weights["torch"]] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
    assert np.abs(weights["torch"][2]).max() > 0.1  # the bias was drawn, not left at zero
    for name in ("keras", "nnx", "nnx optimized", "linen"):
        for a, b in zip(weights["torch"], weights[name]):
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), name
        np.testing.assert_allclose(outputs[name], outputs["torch"], rtol=1e-4, atol=1e-5)


def test_parts_with_different_rules_are_drawn_one_by_one():
    """A rule for torch's bias_hh alone (zeros) splits the summed bias: b_ih is drawn on its own,
    b_hh is zero, as the rules say."""
    from test_transfer import _torch_lstm

    from polyinit.rules import name

    model, _ = _torch_lstm()
    rules = Rules([(name("lstm.bias_hh_l0"), pi.zeros())] + list(LSTM_RULES.rules), seed=7)
    apply(model, rules, portable=True)
    assert not model.lstm.bias_hh_l0.any() and model.lstm.bias_ih_l0.abs().max() > 0.1
    whole, _ = _torch_lstm()
    apply(whole, LSTM_RULES, portable=True)
    assert not whole.lstm.bias_hh_l0.any()  # drawn whole: the value in b_ih, zeros in b_hh
    assert whole.lstm.weight_ih_l0.equal(model.lstm.weight_ih_l0)
