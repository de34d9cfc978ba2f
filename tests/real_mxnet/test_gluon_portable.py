"""Portable apply on real Gluon blocks gives the same weights, bit for bit, as on the same
architecture in torch (issue 12, points 1 and 3), and so the same outputs: a CNN, and an LSTM
whose two summed biases and packed gates are drawn as the logical parameters they are.

MXNet 1.9.1 and torch do not install into one environment (numpy 1.23.5 against numpy 2), so the
torch side runs in the main environment (``.venv``, or ``POLYINIT_MAIN_PYTHON``), a subprocess
that draws the torch models and writes their logical weights and outputs to a file."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
from mxnet import gluon
from mxnet.gluon import nn, rnn

from polyinit.rules import apply

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS)
from test_portable_models import C1, C2, C_IN, CLASSES, LSTM_RULES, RULES, SIDE, _logical_values, logical

X = np.random.default_rng(0).standard_normal((4, SIDE, SIDE, C_IN)).astype(np.float32)  # NHWC
SEQ = np.random.default_rng(2).standard_normal((3, 5, 6)).astype(np.float32)  # (batch, time, 6)

TORCH_SIDE = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_portable_models import RULES, LSTM_RULES, torch_cnn, logical, _logical_values
    from test_transfer import _torch_lstm
    from polyinit.rules import apply
    cnn, run_cnn = torch_cnn()
    apply(cnn, RULES, portable=True)
    lstm, run_lstm = _torch_lstm()
    apply(lstm, LSTM_RULES, portable=True)
    x, seq = np.load(sys.argv[2]), np.load(sys.argv[3])
    arrays = {{f"cnn{{i}}": a for i, a in enumerate(logical(cnn, "torch"))}}
    arrays.update({{f"lstm{{i}}": a for i, a in enumerate(_logical_values(lstm))}})
    np.savez(sys.argv[1], cnn_out=run_cnn(x), lstm_out=run_lstm(seq), **arrays)
""")


@pytest.fixture(scope="module")
def torch_side(tmp_path_factory):
    python = os.environ.get("POLYINIT_MAIN_PYTHON", os.path.join(os.path.dirname(TESTS), ".venv", "bin", "python"))
    if not os.path.exists(python):
        pytest.skip(f"needs the main environment with torch ({python}), as tools/test.sh builds it")
    folder = tmp_path_factory.mktemp("torch_side")
    np.save(folder / "x.npy", X)
    np.save(folder / "seq.npy", SEQ)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLYINIT_TEST_BACKENDS")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.path.dirname(TESTS))
    out = subprocess.run(
        [
            python,
            "-c",
            TORCH_SIDE.format(tests=TESTS),
            str(folder / "torch.npz"),
            str(folder / "x.npy"),
            str(folder / "seq.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(np.load(folder / "torch.npz"))


def _arrays(saved: dict, prefix: str) -> list:
    return [
        saved[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) and k[len(prefix) :].isdigit() for k in saved))
    ]


def test_a_gluon_cnn_gets_torchs_portable_weights_and_outputs(torch_side):
    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(C1, 3, in_channels=C_IN, activation="relu"),
        nn.Conv2D(C2, 3, in_channels=C1, activation="relu"),
        nn.GlobalAvgPool2D(),
        nn.Flatten(),
        nn.Dense(CLASSES, in_units=C2),
    )
    net.initialize()
    apply(net, RULES, portable=True)
    mx.nd.waitall()
    ours, theirs = logical(net, "gluon"), _arrays(torch_side, "cnn")
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    out = net(mx.nd.array(X.transpose(0, 3, 1, 2))).asnumpy()
    np.testing.assert_allclose(out, torch_side["cnn_out"], rtol=1e-4, atol=1e-5)


class _LSTM(gluon.Block):
    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.lstm = rnn.LSTM(8, input_size=6, layout="NTC")
            self.head = nn.Dense(3, in_units=8)

    def forward(self, x):
        return self.head(self.lstm(x)[:, -1, :])


def test_a_gluon_lstm_gets_torchs_portable_weights_and_outputs(torch_side):
    net = _LSTM()
    net.initialize()
    apply(net, LSTM_RULES, portable=True)
    mx.nd.waitall()
    ours, theirs = _logical_values(net), _arrays(torch_side, "lstm")
    assert [a.shape for a in ours] == [(8, 6, 4), (8, 8, 4), (8, 4), (3, 8), (3,)]
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    assert not net.lstm.l0_h2h_bias.data().asnumpy().any()  # the summed bias is drawn whole, into i2h
    np.testing.assert_allclose(net(mx.nd.array(SEQ)).asnumpy(), torch_side["lstm_out"], rtol=1e-4, atol=1e-5)
